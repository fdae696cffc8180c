"""Stable oblivious radix sort (Chida et al. 2019; Asharov et al., CCS 2022).

The key is a boolean-shared w-bit word per row. Passes run from the least
significant digit of ``digit_bits`` bits. Each pass:

1. takes the digit's bits and converts them to arithmetic 0/1 shares;
2. forms the one-hot vector of the digit (2^d indicators) from the products
   of subsets of its bits (2^d − d − 1 multiplications, ⌈log2 d⌉ rounds) by a
   local Möbius transform;
3. computes each row's stable destination locally from prefix sums of the
   indicators, ``dest = Σ_v f_v · (rows with a smaller digit + rank among
   rows with digit v) − 1``, one inner product (1 round);
4. moves the remaining key bits and the row's original index to ``dest`` by
   shuffle-then-open (:func:`ipa.mpc.permute.move_rows`).

After the last pass the rows are in key order and carry their original
index σ. The payload moves once: σ is inverted by moving ``range(n)`` to σ,
then the payload columns move to σ⁻¹.

Cost per pass with d-bit digits, per row and party: about 2d + (2^d − d − 1)
+ 1 words of 32 bits for steps 1–3 (2 + ⌈log2 d⌉ + 1 rounds) and
``move_rows`` of two columns (3 rounds, ≈ 4–7 words). Then two
``move_rows``: of one column, and of the payload. The opened destinations are
uniformly random permutations, so helpers learn nothing but n.

**Malicious mode**: the arithmetic (conversions, one-hot, rank, the index)
runs in ``uint64``, of which the shuffles verify and ``move_rows`` opens the
low 32 bits (values < n < 2^32); every move is a verified shuffle, a
checkpoint and a confirmed opening (:mod:`ipa.mpc.permute`). The payload
must be boolean columns, which the shuffle verifies in every bit (an
arithmetic column would be verified only modulo 2^32). The semi-honest sort
keeps ``uint32`` and its figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np

from ipa.mpc.context import Context
from ipa.mpc.convert import BIT_TO_ARITH_STEPS, bit_to_arith
from ipa.mpc.multiply import inner_product
from ipa.mpc.one_hot import ONE_HOT_STEPS, one_hot
from ipa.mpc.permute import MOVE_ROWS_STEPS, move_rows
from ipa.mpc.replicated import AShares, BShares, K, _Pair, public
from ipa.mpc.step import Family, Steps

__all__ = ["DEFAULT_DIGIT_BITS", "SORT_STEPS", "sort"]

_PASS = Steps("sort.pass", "rank", to_arith=BIT_TO_ARITH_STEPS, one_hot=ONE_HOT_STEPS, move=MOVE_ROWS_STEPS)
SORT_STEPS = Steps("sort", pass_=Family(64, _PASS), invert=MOVE_ROWS_STEPS, apply=MOVE_ROWS_STEPS)
"""At most 64 passes: keys of up to 64 bits, at least one bit per pass."""

DEFAULT_DIGIT_BITS = 3
_INDEX = np.dtype(np.uint32)
_MALICIOUS_INDEX = np.dtype(np.uint64)


def _destinations(ctx: Context, digit: BShares, dtype: np.dtype) -> AShares:
    """Stable sorted position (0-based) of each row by a d-bit digit (d stacked bits)."""
    bits = bit_to_arith(ctx.narrow("to_arith"), digit, dtype)
    f = one_hot(ctx.narrow("one_hot"), bits)
    del bits
    rank = f.cumsum(axis=1)
    for part in (rank.left, rank.right):  # in place: rank_v += rows whose digit is smaller than v
        totals = part[:, -1].copy()
        part += (np.cumsum(totals, dtype=part.dtype) - totals)[:, None]
    return inner_product(ctx.narrow("rank"), f, rank, axis=0).add_public(ctx.party, -1)


def sort(
    ctx: Context, key: BShares, payload: Sequence[K], *, digit_bits: int = DEFAULT_DIGIT_BITS
) -> list[K]:
    """Stably sort rows by the w-bit ``key``; return the payload columns in that order.

    ``key`` is one boolean-shared word per row; payload columns are any share
    columns with the same number of rows. Ties keep their input order.
    A pass of d bits takes at most 6 + ⌈log2 d⌉ rounds (one fewer where its
    first message overlaps the previous pass's last), inverting and applying
    at most 3 each: for 40-bit keys and 3-bit digits 101 rounds (the bound 116).
    Cost: at most ``sum(6 + log2(min(d, w - i*d)) for i in range(-(-w // d))) + 6`` rounds.
    Words per row per party: see the module docstring; ``bench/mpc.py`` prints them.
    In malicious mode a pass adds a checkpoint (4 rounds) and the shuffle's
    tags, key opening and checks (3 rounds) to its move:
    Malicious cost: at most ``sum(13 + log2(min(d, w - i*d)) for i in range(-(-w // d))) + 12`` rounds.
    """
    ctx = ctx.enter(SORT_STEPS)
    n = len(key)
    if not 1 <= digit_bits <= 8:
        raise ValueError(f"digit_bits must be between 1 and 8, got {digit_bits}")
    if n >= 1 << 32:
        raise ValueError(f"sort handles fewer than 2^32 rows, got {n}")
    if any(len(c) != n for c in payload):
        raise ValueError("payload columns must have as many rows as the key")
    if ctx.malicious and not all(isinstance(c, BShares) for c in payload):
        raise ValueError("in malicious mode the sort's payload must be boolean columns")
    if n == 0:
        return list(payload)
    dtype = _MALICIOUS_INDEX if ctx.malicious else _INDEX
    rest: BShares | None = key
    index = public(ctx.party, np.arange(n), dtype)
    done, number = 0, 0
    while rest is not None:
        d = min(digit_bits, key.width - done)
        step = ctx.narrow("pass", number)
        dest = _destinations(step, rest.bits(0, d), dtype)
        done, number = done + d, number + 1
        rest = rest.shift_right(d) if done < key.width else None
        columns: list[_Pair] = [index] if rest is None else [index, rest]
        moved = move_rows(step.narrow("move"), dest, columns)  # keeps each column's kind
        index, rest = cast(AShares, moved[0]), (cast(BShares, moved[1]) if rest is not None else None)
    inverse = move_rows(ctx.narrow("invert"), index, [public(ctx.party, np.arange(n), dtype)])[0]
    return move_rows(ctx.narrow("apply"), inverse, payload)
