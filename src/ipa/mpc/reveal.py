"""Opening shared values: to all three helpers, or to an outside party only.

``reveal``: party i sends its ``left`` component x_i to its next neighbour,
which was missing exactly that one. 1 round, 1 word per element per party.
Every party learns the value.

``reveal_to_outside`` is local: each helper hands its pair to the outside
recipient (the report collector), who reconstructs with
:func:`ipa.mpc.sharing.reconstruct`, checking that each component's two copies
agree. 0 rounds between helpers; 2 words per element per helper to the
recipient. The helpers learn nothing.
"""

from __future__ import annotations

import numpy as np

from ipa.mpc.channel import Peer
from ipa.mpc.context import Context
from ipa.mpc.replicated import BShares, Shares

__all__ = ["reveal", "reveal_to_outside"]


def reveal(ctx: Context, x: Shares) -> np.ndarray:
    """Open ``x`` to all three helpers. Cost: ``1`` round, ``1`` word per element."""
    ctx.send(Peer.NEXT, x.left)
    (missing,) = ctx.receive(Peer.PREV, x.left)
    if isinstance(x, BShares):
        return x.left ^ x.right ^ missing
    return x.left + x.right + missing


def reveal_to_outside(x: Shares) -> tuple[np.ndarray, np.ndarray]:
    """This helper's pair for an outside recipient, who reconstructs and checks it."""
    return x.left, x.right
