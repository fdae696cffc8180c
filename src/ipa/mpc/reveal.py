"""Opening shared values: to all three helpers, or to an outside party only.

``reveal``: party i sends its ``left`` component x_i to its next neighbour,
which was missing exactly that one. 1 round, 1 word per element per party.
Every party learns the value.

``reveal_to_outside`` is local: each helper hands its pair to the outside
recipient (the report collector), who reconstructs with
:func:`ipa.mpc.sharing.reconstruct`, checking that each component's two copies
agree. 0 rounds between helpers; 2 words per element per helper to the
recipient. The helpers learn nothing.

**Malicious mode** (``ctx.malicious``): ``reveal`` opens an *unmasked* value,
so it refuses (ProtocolError) while the context's verifier holds products not
yet verified by :func:`ipa.mpc.checkpoint.checkpoint`; otherwise it is
:func:`ipa.mpc.verify.open_confirmed` at the caller's step: the same
component to the next party, plus a digest of it from its second holder to
the previous one, in the same round (1 word per element + 32 bytes).
Masked openings inside protocols (a checkpoint's differences, ``bool_to_arith``)
use the hash-confirmed opening directly, without a checkpoint.
"""

from __future__ import annotations

import numpy as np

from ipa.errors import ProtocolError
from ipa.mpc.channel import Peer
from ipa.mpc.context import Context
from ipa.mpc.replicated import BShares, Shares
from ipa.mpc.verify import open_confirmed

__all__ = ["reveal", "reveal_to_outside"]


def reveal(ctx: Context, x: Shares) -> np.ndarray:
    """Open ``x`` to all three helpers. Cost: ``1`` round, ``1`` word per element.

    Malicious cost: ``1`` round, ``1 + 32 / (n * b)`` words per element (n elements of ``b`` bytes).
    Raises ProtocolError in malicious mode while products await a checkpoint,
    MaliciousBehaviourError("verified reveal") if a component was altered.
    """
    if ctx.verifier is not None:
        if ctx.verifier.pending:
            raise ProtocolError(
                f"reveal at step {ctx.step!r}: {ctx.verifier.pending} products are not verified yet; "
                "run checkpoint(ctx) before opening unmasked values"
            )
        (value,) = open_confirmed(ctx, ctx, [x])
        return value
    ctx.send(Peer.NEXT, x.left)
    (missing,) = ctx.receive(Peer.PREV, x.left)
    if isinstance(x, BShares):
        return x.left ^ x.right ^ missing
    return x.left + x.right + missing


def reveal_to_outside(x: Shares) -> tuple[np.ndarray, np.ndarray]:
    """This helper's pair for an outside recipient, who reconstructs and checks it."""
    return x.left, x.right
