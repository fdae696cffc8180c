"""One-hot indicators of a small shared integer given as arithmetic bits.

For d bits b_0 … b_{d−1} (arithmetic 0/1 shares), every product of a subset of
them is computed by doubling subset size, then the superset Möbius transform

    f_V = Σ_{S ⊇ V} (−1)^{|S∖V|} Π_{j∈S} b_j

turns the products into the 2^d indicators ``f_v = [value == v]``, locally.
:func:`monomials` stops before the transform, so that a caller can form the
indicators of one block of rows at a time (:meth:`Monomials.indicators`).

Cost: ⌈log2 d⌉ rounds; 2^d − d − 1 words per row per party.
Parties learn nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ipa.mpc.context import Context
from ipa.mpc.mac import Macs, value
from ipa.mpc.multiply import multiply_stacked
from ipa.mpc.replicated import AShares, public, stack
from ipa.mpc.step import Family, Steps

__all__ = [
    "ONE_HOT_STEPS",
    "Monomials",
    "authenticated_one_hot",
    "mobius",
    "monomials",
    "one_hot",
    "product_levels",
]

ONE_HOT_STEPS = Steps("one_hot", level=Family(6))
"""One multiplication per level: ⌈log2 d⌉ ≤ 6 for up to 64 bits."""


@dataclass(frozen=True)
class Monomials:
    """The products of every subset of d bits, from which the indicators follow locally.

    ``bits`` is (d, n); ``products[s]`` the shares of ``Π_{j∈s} b_j`` for each
    subset s of two bits or more. :meth:`indicators` applies the Möbius
    transform to any block of rows, so a caller that consumes the 2^d
    indicators block by block never holds them for all rows.
    """

    party: int
    bits: AShares
    products: dict[int, AShares]

    @property
    def d(self) -> int:
        return self.bits.shape[0]

    def indicators(self, rows: slice = slice(None)) -> AShares:
        """Shares of ``[digit == v]`` for v < 2^d (shape (2^d, rows)), fresh arrays."""
        bits = self.bits[:, rows]
        shape = (1 << self.d, len(bits))
        f = AShares(np.empty(shape, bits.dtype), np.empty(shape, bits.dtype))
        for s in range(1 << self.d):
            if s == 0:
                one = public(self.party, np.ones(1), bits.dtype)
                f.left[0], f.right[0] = one.left, one.right
            elif s & (s - 1) == 0:
                f.left[s], f.right[s] = bits.left[s.bit_length() - 1], bits.right[s.bit_length() - 1]
            else:
                f.left[s], f.right[s] = self.products[s].left[rows], self.products[s].right[rows]
        mobius(f.left, self.d)
        mobius(f.right, self.d)
        return f


def monomials(ctx: Context, bits: AShares) -> Monomials:
    """Products of all subsets of d stacked 0/1 columns, by doubling subset size.

    Cost: ``log2(d)`` rounds, ``2**d - d - 1`` words per row.
    """
    ctx = ctx.enter(ONE_HOT_STEPS)
    d = bits.shape[0]
    monomial: dict[int, AShares] = {1 << j: bits[j] for j in range(d)}
    for level, pairs in enumerate(product_levels(d)):
        lows, highs = [monomial[lo] for _, lo, _ in pairs], [monomial[hi] for _, _, hi in pairs]
        product = multiply_stacked(ctx.narrow("level", level), lows, highs)
        for k, (s, _, _) in enumerate(pairs):
            monomial[s] = product[k]
    products = {s: m for s, m in monomial.items() if s.bit_count() >= 2}
    return Monomials(ctx.party, bits, products)


def product_levels(d: int) -> list[list[tuple[int, int, int]]]:
    """The subsets of d bits with two bits or more, by doubling subset size: one list per level.

    Each entry is ``(s, lo, hi)``: subset s is the product of its lowest bits
    ``lo`` (as many as the subsets of the level before had, at most) and the
    rest ``hi``, both formed at earlier levels (or single bits).
    """
    levels, size = [], 1
    while size < d:
        todo = [s for s in range(1 << d) if size < s.bit_count() <= 2 * size]
        levels.append([(s, lo, s ^ lo) for s in todo for lo in [_lowest_bits(s, size)]])
        size *= 2
    return levels


def one_hot(ctx: Context, bits: AShares) -> AShares:
    """Indicators ``[digit == v]`` for v < 2^d from d stacked 0/1 columns.

    Products of all subsets of the bits by doubling subset size, then the
    Möbius transform ``f_V = Σ_{S ⊇ V} (−1)^{|S∖V|} Π_{j∈S} b_j``.
    Cost: ``log2(d)`` rounds, ``2**d - d - 1`` words per row.
    """
    return monomials(ctx, bits).indicators()


def authenticated_one_hot(ctx: Context, macs: Macs, bits: AShares) -> AShares:
    """:func:`one_hot` of authenticated bits (d, 1 + K, n), its products checked by ``macs``
    (:mod:`ipa.mpc.mac`): authenticated indicators, shape (2^d, 1 + K, n).

    Cost: ``log2(d)`` rounds, ``(2**d - d - 1)*(1 + K)`` words per row.
    """
    ctx = ctx.enter(ONE_HOT_STEPS)
    d = bits.shape[0]
    monomial: dict[int, AShares] = {0: macs.one().map(lambda a: np.broadcast_to(a, bits.shape[1:]))}
    monomial.update({1 << j: bits[j] for j in range(d)})
    for level, pairs in enumerate(product_levels(d)):
        lows = stack([monomial[lo] for _, lo, _ in pairs])
        highs = stack([value(monomial[hi]) for _, _, hi in pairs])  # only their values are multiplied
        product = macs.multiply(ctx.narrow("level", level), lows, highs)
        for k, (s, _, _) in enumerate(pairs):
            monomial[s] = product[k]
    f = stack([monomial[s] for s in range(1 << d)])
    del monomial
    mobius(f.left, d)
    mobius(f.right, d)
    return f


def _lowest_bits(s: int, count: int) -> int:
    out = 0
    while count:
        low = s & -s
        out, s, count = out | low, s ^ low, count - 1
    return out


def mobius(a: np.ndarray, d: int) -> None:
    """In place, the superset Möbius transform over the leading axis of length 2^d.

    It is linear, so applying it to each share component transforms the secret.
    """
    for j in range(d):
        view = a.reshape(1 << (d - 1 - j), 2, 1 << j, -1)
        view[:, 0] -= view[:, 1]
