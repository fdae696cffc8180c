"""One-hot indicators of a small shared integer given as arithmetic bits.

For d bits b_0 … b_{d−1} (arithmetic 0/1 shares), every product of a subset of
them is computed by doubling subset size, then the superset Möbius transform

    f_V = Σ_{S ⊇ V} (−1)^{|S∖V|} Π_{j∈S} b_j

turns the products into the 2^d indicators ``f_v = [value == v]``, locally.

Cost: ⌈log2 d⌉ rounds; 2^d − d − 1 words per row per party.
Parties learn nothing.
"""

from __future__ import annotations

import numpy as np

from ipa.mpc.context import Context
from ipa.mpc.multiply import multiply
from ipa.mpc.replicated import AShares, public, stack
from ipa.mpc.step import Family, Steps

__all__ = ["ONE_HOT_STEPS", "one_hot"]

ONE_HOT_STEPS = Steps("one_hot", level=Family(6))
"""One multiplication per level: ⌈log2 d⌉ ≤ 6 for up to 64 bits."""


def one_hot(ctx: Context, bits: AShares) -> AShares:
    """Indicators ``[digit == v]`` for v < 2^d from d stacked 0/1 columns.

    Products of all subsets of the bits by doubling subset size, then the
    Möbius transform ``f_V = Σ_{S ⊇ V} (−1)^{|S∖V|} Π_{j∈S} b_j``.
    Cost: ``log2(d)`` rounds, ``2**d - d - 1`` words per row.
    """
    ctx = ctx.enter(ONE_HOT_STEPS)
    d, n = bits.shape
    monomial: dict[int, AShares] = {0: public(ctx.party, np.ones(n), bits.dtype)}
    for j in range(d):
        monomial[1 << j] = bits[j]
    size, level = 1, 0
    while size < d:
        # Subsets of size in (size, 2·size]: split off their lowest `size` bits.
        todo = [s for s in range(1 << d) if size < s.bit_count() <= 2 * size]
        lows = [_lowest_bits(s, size) for s in todo]
        product = multiply(
            ctx.narrow("level", level),
            stack([monomial[lo] for lo in lows]),
            stack([monomial[s ^ lo] for s, lo in zip(todo, lows, strict=True)]),
        )
        for k, s in enumerate(todo):
            monomial[s] = product[k]
        size, level = 2 * size, level + 1
    f = stack([monomial[s] for s in range(1 << d)])  # fresh arrays: transformed in place
    _mobius(f.left, d)
    _mobius(f.right, d)
    return f


def _lowest_bits(s: int, count: int) -> int:
    out = 0
    while count:
        low = s & -s
        out, s, count = out | low, s ^ low, count - 1
    return out


def _mobius(a: np.ndarray, d: int) -> None:
    """In place, the superset Möbius transform over the leading axis of length 2^d.

    It is linear, so applying it to each share component transforms the secret.
    """
    for j in range(d):
        view = a.reshape(1 << (d - 1 - j), 2, 1 << j, -1)
        view[:, 0] -= view[:, 1]
