"""Products checked by MACs under keys opened after them (malicious mode, the sort's arithmetic).

A checkpoint (:mod:`ipa.mpc.checkpoint`) verifies a product against B
bucket-checked triples and opens its inputs' differences B times: about
3B + 1 words per product, and as many for *every term* of an inner product.
The sort's destinations (10 products and an inner product of 2^d terms per
row and pass, d = 3) cost 192 words per row and pass that way, two thirds of
a malicious query's bytes. Here they are checked by information-theoretic
MACs instead, as in SPDZ-style protocols and Chida et al. (*Fast
large-scale honest-majority MPC for malicious adversaries*, CRYPTO 2018),
with one change that makes them work over Z_2^64 without a field: a batch's
keys are opened once its products are fixed, and used for nothing else.

**Authenticated values.** A batch has K = 2 keys α_1, α_2: random
replicated sharings in Z_2^64 drawn from PRSS, so a corrupt helper c lacks
one component of each and each key is uniform to it. An authenticated value
x is the stack ``[x, α_1·x, α_2·x]`` on the axis before the rows (shape
``(..., 1 + K, n)``). Linear maps act on the stack; the public constant 1 is
``[1, α_1, α_2]`` (:meth:`Macs.one`). A product of authenticated x by y
multiplies the stack by y's value (:meth:`Macs.multiply`): one semi-honest
multiplication of 1 + K words per element, whose result is the
authenticated x·y; an inner product likewise costs 1 + K words per output
element, however many terms it sums. A value that is right by other means
(a share component, known to two helpers) gets its MACs by multiplying it
with the keys (:meth:`Macs.authenticate`, K words per element).

**The check** (:meth:`Macs.check`). After the batch's last product, the
keys are opened (hash-confirmed, both in one opening). Then, call by call in
the order the products were made, each helper computes locally the residue
``D = (α_k·z) − α_k·z`` of every element of the call's result, for each key,
and the helpers show it is zero without opening it
(:func:`~ipa.mpc.verify.check_zero`, one round and a 32-byte digest per
call). A nonzero residue raises MaliciousBehaviourError("MAC").

**Soundness.** c can add to a product an error of its choice on the value
(e) and on each MAC row (δ_k), functions of its view, which is independent
of the keys until they are opened (:mod:`ipa.mpc.multiply`: every deviation
in a replicated product is such an additive error). For z = x·y,
D_z = D_x·y + (δ − α·e). If every call before passed its check, D_x = 0 (x
is a linear map of earlier results and checked inputs) and D_z = δ − α·e,
which is zero for a key with probability at most 2^-(64 − v) over it, where
2^v is the largest power of two dividing e. The sort opens its destinations
modulo 2^32, and an error reaches them multiplied by integers, so an error
with v ≥ 32 changes nothing; one with v ≤ 31 passes both keys with
probability at most 2^-66. An authenticated input has D = δ, caught with
certainty. Each batch spends its bound, 2^-66, from the run's budget
(:meth:`~ipa.mpc.verifier.Verifier.spend`).

**Only where results count modulo 2^32.** The bound needs v ≤ 31 for every
harmful error, which holds where results are used modulo 2^32 (the sort's
destinations). Where the high bits of a 64-bit value matter, it does not:
an error of 2^63 with no MAC error passes a key whenever the key is even,
both keys with probability 1/4. So the cap's running sums, whose sign bit
(bit 63) decides the comparison with the cap, stay with the checkpoints
(they were moved here once, on 2 December 2026, and moved back the same
day for this reason). Full 64-bit values would need MACs in a larger ring
(Z_2^(64+s), as SPDZ2k does: Cramer, Damgård, Escudero, Scholl, Xing,
CRYPTO 2018), which numpy has no native words for.

**Why call by call, not in one round.** With D_x ≠ 0, D_z = D_x·y + …
depends on the data y, and the zero check sends c a digest of its
neighbours' part of D under a key c shares, so c could test guesses of y.
Checked call by call, the honest helpers stop at the first nonzero call,
whose residues δ − α·e c can compute itself: whether they abort depends on
c's errors and the keys, never on the data.

What a helper learns: the keys (used once) and whether the checks passed.
With W workers per helper each triple draws, uses and opens its own keys
from its own PRSS: a row's rank depends on other workers' digit totals, but
only as the unauthenticated factor y, so no MAC crosses triples, and a key
one triple opened says nothing of another's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ipa.mpc.channel import Peer
from ipa.mpc.context import Context
from ipa.mpc.multiply import unrecorded_inner_product, unrecorded_multiply
from ipa.mpc.replicated import AShares, public
from ipa.mpc.step import Family, Steps
from ipa.mpc.verify import check_zero, open_confirmed

__all__ = ["MAC_KEYS", "MAC_LOG2_BOUND", "MAC_STEPS", "Macs", "value"]

MAC_KEYS = 2
"""K: keys per batch. Each key catches an error of 2-adic valuation v ≤ 31 but with
probability 2^-(64 - v) ≤ 2^-33; two keys miss it with probability 2^-66 at most."""
MAC_LOG2_BOUND = -2.0 * 33
"""log2 of the probability that a batch passes with an error that changes a result mod 2^32."""
MAC_STEPS = Steps("mac", "keys", "open", call=Family(8))
"""``keys``: the PRSS draw; ``open``: the keys' opening; ``call_i``: the zero check of call i."""
_WORD = np.dtype(np.uint64)


def value(x: AShares) -> AShares:
    """The value row of an authenticated stack, keeping its axis: shape ``(..., 1, n)``."""
    return x[..., :1, :]


@dataclass
class Macs:
    """One batch's keys, and each authenticated result made under them until :meth:`check`."""

    ctx: Context
    keys: AShares
    """(K, 1): the keys' shares, broadcast over rows."""
    calls: list[AShares] = field(default_factory=list)

    @classmethod
    def draw(cls, ctx: Context) -> Macs:
        """Fresh keys from PRSS at ``<ctx>/keys`` (``ctx`` declares :data:`MAC_STEPS`)."""
        ctx = ctx.enter(MAC_STEPS)
        step = ctx.narrow("keys")
        shape = (MAC_KEYS, 1)
        return cls(ctx, AShares(step.draw(Peer.PREV, shape, _WORD), step.draw(Peer.NEXT, shape, _WORD)))

    def one(self) -> AShares:
        """The authenticated public constant 1: ``[1, α_1, α_2]``, shape (1 + K, 1)."""
        return _joined(public(self.ctx.party, np.ones((1, 1)), _WORD), self.keys)

    def authenticate(self, ctx: Context, x: AShares) -> AShares:
        """``[x, α_k·x]`` for x of shape (..., n), right by other means: shape (..., 1 + K, n).

        Cost: ``1`` round, ``K`` words per element.
        """
        x = x[..., None, :]
        return self._note(_joined(x, unrecorded_multiply(ctx, x, self.keys)))

    def multiply(self, ctx: Context, x: AShares, y: AShares) -> AShares:
        """Authenticated ``x·y`` from authenticated stacks x and y of one shape (y's MACs unused).

        Cost: ``1`` round, ``1 + K`` words per element.
        """
        return self._note(unrecorded_multiply(ctx, x, value(y)))

    def inner_product(self, ctx: Context, x: AShares, y: AShares, axis: int = 0) -> AShares:
        """Authenticated ``sum(x·y)`` over ``axis`` (not the stack's or the rows' axis) for x
        authenticated, y a plain share column broadcast against it (one axis fewer to the left
        of the rows: the stack's, of length 1).

        Cost: ``1`` round, ``1 + K`` words per element of the result.
        """
        return self._note(unrecorded_inner_product(ctx, x, y, axis))

    def check(self) -> None:
        """Open the keys, then show every call's residues zero, call by call (module docstring).

        Raises MaliciousBehaviourError("MAC") at the first call with a nonzero residue,
        and ProtocolError if the run's soundness budget cannot take the batch's bound.
        """
        ctx = self.ctx
        (alpha,) = open_confirmed(ctx.narrow("open"), ctx.narrow("open"), [self.keys])
        for i, z in enumerate(self.calls):
            check_zero(ctx.narrow("call", i), {"MAC": [_residue(z, alpha)]})
        self.calls.clear()
        if ctx.verifier is not None:
            ctx.verifier.spend(MAC_LOG2_BOUND)

    def _note(self, z: AShares) -> AShares:
        self.calls.append(z)
        return z


def _joined(x: AShares, macs: AShares) -> AShares:
    """The stack ``[x, macs]`` on the axis before the rows."""
    return AShares(np.concatenate([x.left, macs.left], -2), np.concatenate([x.right, macs.right], -2))


def _residue(z: AShares, alpha: np.ndarray) -> AShares:
    """Shares of ``α_k·z − (α_k·z)`` for each key: shape (..., K, n)."""
    v, macs = value(z), z[..., 1:, :]
    return AShares(v.left * alpha - macs.left, v.right * alpha - macs.right)
