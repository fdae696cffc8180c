"""Replicated 2-of-3 secret shares held by one party, and their local operations.

A value x is split into three components, ``x = x_0 + x_1 + x_2`` (arithmetic,
mod 2^k) or ``x = x_0 ^ x_1 ^ x_2`` (boolean, packed w-bit words). Party i
(H1, H2, H3 are i = 0, 1, 2) holds the pair ``(x_i, x_{i+1})``: ``left`` is the
component it shares with its previous neighbour, ``right`` the one it shares
with its next neighbour. Any two parties can reconstruct; one learns nothing.

Every operation here is local (no messages): linear maps, public constants,
shifts and masks, and re-shaping of the row axis. A column of n rows is one
pair of numpy arrays whose last axis is the row axis; leading axes stack
several columns so one protocol call handles them together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import EllipsisType
from typing import Self, TypeVar

import numpy as np
import numpy.typing as npt

from ipa.mpc.ring import bool_dtype, check_arithmetic_dtype, mask

__all__ = ["AShares", "BShares", "K", "S", "Shares", "concat", "public", "public_bits", "repeat", "stack"]


Index = int | slice | np.ndarray | tuple[int | slice | np.ndarray | EllipsisType | None, ...]
"""A numpy index of rows or stacked columns."""


@dataclass(frozen=True)
class _Pair:
    left: np.ndarray
    right: np.ndarray

    def __post_init__(self) -> None:
        if self.left.shape != self.right.shape or self.left.dtype != self.right.dtype:
            raise ValueError("left and right components must have the same shape and dtype")

    @property
    def dtype(self) -> np.dtype:
        return self.left.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self.left.shape

    def __len__(self) -> int:
        """Number of rows (the last axis)."""
        return self.left.shape[-1] if self.left.ndim else 1

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> Self:
        """Apply one structural numpy function (gather, slice, reshape) to both components."""
        return self.like(fn(self.left), fn(self.right))

    def __getitem__(self, index: Index) -> Self:
        """Rows (or stacked columns) by a numpy index: shares of the same kind and width."""
        return self.map(lambda a: a[index])

    def lag(self, s: int) -> Self:
        """Row i gets row i−s; the first s rows get shares of zero."""

        def shifted(a: np.ndarray) -> np.ndarray:
            out = np.zeros_like(a)
            if s < a.shape[-1]:
                out[..., s:] = a[..., : a.shape[-1] - s]
            return out

        return self.map(shifted)

    def like(self, left: np.ndarray, right: np.ndarray) -> Self:
        """Shares of the same kind (and width) with these components."""
        raise NotImplementedError


@dataclass(frozen=True)
class AShares(_Pair):
    """One party's pair of arithmetic shares over Z_2^k (``uint32`` or ``uint64``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_arithmetic_dtype(self.dtype)

    def like(self, left: np.ndarray, right: np.ndarray) -> Self:
        return type(self)(left, right)

    def __add__(self, other: AShares) -> AShares:
        return AShares(self.left + other.left, self.right + other.right)

    def __sub__(self, other: AShares) -> AShares:
        return AShares(self.left - other.left, self.right - other.right)

    def __neg__(self) -> AShares:
        return AShares(-self.left, -self.right)

    def scale(self, c: int | np.integer | np.ndarray) -> AShares:
        """Multiply by a public constant (scalar, or an array broadcast over rows)."""
        c = np.asarray(c).astype(self.dtype)
        return AShares(self.left * c, self.right * c)

    def add_public(self, party: int, c: int | np.integer | np.ndarray) -> AShares:
        """Add a public constant: only component 0 (H1's left, H3's right) changes."""
        c = np.asarray(c).astype(self.dtype)
        left = self.left + c if party == 0 else self.left
        return AShares(left, self.right + c if party == 2 else self.right)

    def sum(self, axis: int) -> AShares:
        """Sum over one axis, wrapping in the ring."""
        return AShares(self.left.sum(axis, dtype=self.dtype), self.right.sum(axis, dtype=self.dtype))

    def cumsum(self, axis: int = -1) -> AShares:
        """Prefix sums along an axis, wrapping in the ring."""
        return AShares(
            np.cumsum(self.left, axis, dtype=self.dtype), np.cumsum(self.right, axis, dtype=self.dtype)
        )


@dataclass(frozen=True)
class BShares(_Pair):
    """One party's pair of boolean shares of ``width``-bit values packed one per word.

    Invariant: both components are zero above ``width``; protocols keep it by
    masking their randomness, and local operations keep it by construction.
    """

    width: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dtype != bool_dtype(self.width):
            raise ValueError(f"{self.width}-bit boolean shares must be {bool_dtype(self.width)}")

    def like(self, left: np.ndarray, right: np.ndarray) -> Self:
        return type(self)(left, right, self.width)

    def __xor__(self, other: BShares) -> BShares:
        return BShares(self.left ^ other.left, self.right ^ other.right, max(self.width, other.width))

    def xor_public(self, party: int, c: int | np.integer | np.ndarray) -> BShares:
        """XOR a public constant (``c`` ≤ the width's mask) into component 0."""
        c = np.asarray(c).astype(self.dtype)
        left = self.left ^ c if party == 0 else self.left
        return BShares(left, self.right ^ c if party == 2 else self.right, self.width)

    def invert(self, party: int) -> BShares:
        """Bitwise NOT within ``width`` bits."""
        return self.xor_public(party, mask(self.width, self.dtype))

    def mask(self, bits: int | np.integer | np.ndarray) -> BShares:
        """AND with a public bit mask (local)."""
        m = np.asarray(bits).astype(self.dtype)
        return BShares(self.left & m, self.right & m, self.width)

    def shift_left(self, s: int) -> BShares:
        """Shift towards the high bits, dropping bits above ``width``."""
        m = mask(self.width)
        return BShares((self.left << s) & m, (self.right << s) & m, self.width)

    def shift_right(self, s: int) -> BShares:
        """Shift towards the low bits; the width shrinks by ``s`` (the word may shrink too)."""
        width = max(self.width - s, 1)
        dtype = bool_dtype(width)
        return BShares((self.left >> s).astype(dtype), (self.right >> s).astype(dtype), width)

    def resize(self, width: int) -> BShares:
        """The low ``width`` bits, zero-extended or truncated, in a ``width``-bit word
        (these very shares at their own width: shares are never written in place)."""
        if width == self.width:
            return self
        dtype, m = bool_dtype(width), mask(width)
        return BShares(self.left.astype(dtype) & m, self.right.astype(dtype) & m, width)

    def expand(self, width: int) -> BShares:
        """1-bit shares → ``width``-bit words of all ones or all zeros (local: XOR is linear)."""
        dtype, m = bool_dtype(width), mask(width)
        return BShares((0 - self.left.astype(dtype)) & m, (0 - self.right.astype(dtype)) & m, width)

    def bits(self, start: int, count: int) -> BShares:
        """Bits ``start .. start+count-1`` as ``count`` stacked 1-bit columns (axis 0)."""
        return BShares(_bits(self.left, start, count), _bits(self.right, start, count), 1)


def _bits(a: np.ndarray, start: int, count: int) -> np.ndarray:
    """Bits ``start .. start+count-1`` of ``a`` stacked as uint8, one word-sized temporary at a time."""
    out = np.empty((count, *a.shape), np.uint8)
    word = np.empty_like(a)
    for k in range(count):
        np.right_shift(a, a.dtype.type(start + k), out=word)
        np.bitwise_and(word, a.dtype.type(1), out=word)
        out[k] = word
    return out


Shares = AShares | BShares
"""Either kind, where a protocol treats both alike (shuffle, reveal, moving rows)."""

S = TypeVar("S", AShares, BShares)
"""One kind of shares for every argument and the result (``stack`` of BShares is BShares)."""

K = TypeVar("K", bound=_Pair)
"""Each column's own kind, kept from argument to result; the columns may mix kinds (then the
result is only known to be shares: narrow it with ``isinstance``)."""


def public(party: int, values: np.ndarray, dtype: npt.DTypeLike) -> AShares:
    """The trivial arithmetic sharing of public ``values``: component 0 is the value.

    Component 0 is H1's ``left`` and H3's ``right``; the other components are zero.
    """
    values = np.asarray(values).astype(check_arithmetic_dtype(dtype))
    zero = np.zeros_like(values)
    return AShares(values if party == 0 else zero, values if party == 2 else zero)


def public_bits(party: int, values: np.ndarray, width: int) -> BShares:
    """The trivial boolean sharing of public ``width``-bit ``values``."""
    values = np.asarray(values).astype(bool_dtype(width)) & mask(width)
    zero = np.zeros_like(values)
    return BShares(values if party == 0 else zero, values if party == 2 else zero, width)


def stack(columns: Sequence[S]) -> S:
    """Stack equally long columns of one kind along a new leading axis."""
    first = columns[0]
    left = np.stack([c.left for c in columns])
    right = np.stack([c.right for c in columns])
    return first.like(left, right)


def repeat(column: S, count: int) -> S:
    """``stack([column] * count)`` as a read-only view, without copying the column."""
    return column.map(lambda a: np.broadcast_to(a, (count, *a.shape)))


def concat(columns: Sequence[S]) -> S:
    """Concatenate columns of one kind along the row axis."""
    first = columns[0]
    left = np.concatenate([c.left for c in columns], axis=-1)
    right = np.concatenate([c.right for c in columns], axis=-1)
    return first.like(left, right)
