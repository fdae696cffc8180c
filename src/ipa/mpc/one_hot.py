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

__all__ = ["ONE_HOT_STEPS", "Monomials", "authenticated_one_hot", "monomials", "one_hot"]

ONE_HOT_STEPS = Steps("one_hot", level=Family(6))
"""One multiplication per level: ⌈log2 d⌉ ≤ 6 for up to 64 bits."""


@dataclass(frozen=True)
class Monomials:
    """The products of every subset of d bits, from which the indicators follow locally.

    ``bits`` is (d, n), or (d, 1 + K, n) authenticated (:mod:`ipa.mpc.mac`);
    ``products[s]`` the shares of ``Π_{j∈s} b_j`` for each subset s of two
    bits or more; ``one`` the empty product (public 1, or ``[1, α_1, α_2]``).
    :meth:`indicators` applies the Möbius transform to any block of rows, so
    a caller that consumes the 2^d indicators block by block never holds
    them for all rows.
    """

    bits: AShares
    products: dict[int, AShares]
    one: AShares

    @property
    def d(self) -> int:
        return self.bits.shape[0]

    def indicators(self, rows: slice = slice(None)) -> AShares:
        """Shares of ``[digit == v]`` for v < 2^d (shape (2^d, ..., rows)), fresh arrays."""
        bits = self.bits[..., rows]
        shape = (1 << self.d, *bits.shape[1:])
        f = AShares(np.empty(shape, bits.dtype), np.empty(shape, bits.dtype))
        for s in range(1 << self.d):
            if s == 0:
                f.left[0], f.right[0] = self.one.left, self.one.right
            elif s & (s - 1) == 0:
                f.left[s], f.right[s] = bits.left[s.bit_length() - 1], bits.right[s.bit_length() - 1]
            else:
                f.left[s], f.right[s] = self.products[s].left[..., rows], self.products[s].right[..., rows]
        _mobius(f.left, self.d)
        _mobius(f.right, self.d)
        return f


def monomials(ctx: Context, bits: AShares, macs: Macs | None = None) -> Monomials:
    """Products of all subsets of d stacked 0/1 columns, by doubling subset size.

    With ``macs`` the bits are authenticated, (d, 1 + K, n), and so are the
    products, checked by ``macs`` (each stack times the other factor's value).
    Cost: ``log2(d)`` rounds, ``2**d - d - 1`` words per row.
    """
    ctx = ctx.enter(ONE_HOT_STEPS)
    d = bits.shape[0]
    monomial: dict[int, AShares] = {1 << j: bits[j] for j in range(d)}
    size, level = 1, 0
    while size < d:
        # Subsets of size in (size, 2·size]: split off their lowest `size` bits.
        todo = [s for s in range(1 << d) if size < s.bit_count() <= 2 * size]
        lows = [_lowest_bits(s, size) for s in todo]
        xs = [monomial[lo] for lo in lows]
        ys = [monomial[s ^ lo] for s, lo in zip(todo, lows, strict=True)]
        step = ctx.narrow("level", level)
        if macs is None:
            product = multiply_stacked(step, xs, ys)
        else:  # only the other factor's value is multiplied
            product = macs.multiply(step, stack(xs), stack([value(y) for y in ys]))
        for k, s in enumerate(todo):
            monomial[s] = product[k]
        size, level = 2 * size, level + 1
    products = {s: m for s, m in monomial.items() if s.bit_count() >= 2}
    one = public(ctx.party, np.ones(1), bits.dtype) if macs is None else macs.one()
    return Monomials(bits, products, one)


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
    return monomials(ctx, bits, macs).indicators()


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
