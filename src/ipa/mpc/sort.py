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
low 32 bits (values < n < 2^32). Steps 1–3 are authenticated: each pass
draws two MAC keys, makes every product on ``[x, α_1·x, α_2·x]`` and checks
the MACs once its keys are opened, before step 4 (:mod:`ipa.mpc.mac`): per
row and pass 8d + 3(2^d − d) words (39 for d = 3) instead of a checkpoint's 13 per product
and per term of the rank. Every move is a verified shuffle and a confirmed
opening (:mod:`ipa.mpc.permute`); its checkpoint finds nothing pending. The payload
must be boolean columns, which the shuffle verifies in every bit (an
arithmetic column would be verified only modulo 2^32). The semi-honest sort
keeps ``uint32`` and its figures.

**Distributed** (a context with a collective of W > 1 workers,
``docs/scaling.md``): worker k of each helper holds the k-th contiguous block
of the rows, and triple k runs the steps above on it with the same messages
per row (so the cross-helper words, summed over the triples, and the
rounds are those of one process). Inside each helper, never between
helpers: the block sizes are all-gathered once; in step 3 the 2^d digit
totals of every worker (both share components: shares are linear) are
all-gathered, and each row's rank is offset by the rows of smaller digits
everywhere and of its digit in earlier workers, which makes ``dest``
global; in step 4 each shuffle permutation is a uniformly random one of all
n rows, applied by an all-to-all among the workers of each helper that knows
it, none of which holds it whole (:mod:`ipa.mpc.shuffle`), and after the
opening each row goes to the worker owning its
destination (:func:`ipa.mpc.permute.move_rows`). The sorted rows end in the
even blocks of :func:`ipa.mpc.collective.slices`. A helper's workers see
only that helper's share components, words masked for it, and the opened
destinations (uniformly random, as above); the bytes they send each other
are in :func:`sort`'s ``Collective cost``. In malicious mode the shuffle tags'
keys come from the group PRSS and each triple verifies its own products,
tags and openings (:mod:`ipa.mpc.tags`, :mod:`ipa.mpc.permute`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np

from ipa.mpc.collective import Blocks
from ipa.mpc.context import Context
from ipa.mpc.convert import BIT_TO_ARITH_STEPS, authenticated_bit_to_arith, bit_to_arith
from ipa.mpc.mac import MAC_STEPS, Macs, value
from ipa.mpc.multiply import inner_product
from ipa.mpc.one_hot import ONE_HOT_STEPS, authenticated_one_hot, one_hot
from ipa.mpc.permute import MOVE_ROWS_STEPS, move_rows
from ipa.mpc.replicated import AShares, BShares, K, _Pair, public
from ipa.mpc.step import Family, Steps

__all__ = ["DEFAULT_DIGIT_BITS", "SORT_STEPS", "sort"]

_PASS = Steps(
    "sort.pass",
    "rank",
    mac=MAC_STEPS,
    to_arith=BIT_TO_ARITH_STEPS,
    one_hot=ONE_HOT_STEPS,
    move=MOVE_ROWS_STEPS,
)
SORT_STEPS = Steps("sort", pass_=Family(64, _PASS), invert=MOVE_ROWS_STEPS, apply=MOVE_ROWS_STEPS)
"""At most 64 passes: keys of up to 64 bits, at least one bit per pass."""

DEFAULT_DIGIT_BITS = 3
_INDEX = np.dtype(np.uint32)
_MALICIOUS_INDEX = np.dtype(np.uint64)


def _destinations(ctx: Context, digit: BShares, dtype: np.dtype) -> AShares:
    """Stable sorted position (0-based) of each row by a d-bit digit (d stacked bits).

    ``dest = Σ_v f_v · rank_v − 1`` with f the digit's one-hot indicators and
    rank_v the rows up to this one with digit v plus those of a smaller digit.
    In malicious mode the products are authenticated and checked by MACs
    under the pass's own keys before ``dest`` is returned (:mod:`ipa.mpc.mac`).
    """
    if ctx.malicious:
        macs = Macs.draw(ctx.narrow("mac"))
        bits = authenticated_bit_to_arith(ctx.narrow("to_arith"), macs, digit)
        f = authenticated_one_hot(ctx.narrow("one_hot"), macs, bits)
        del bits
        rank = _ranks(ctx, value(f)[:, 0]).map(lambda a: a[:, None])
        dest = value(macs.inner_product(ctx.narrow("rank"), f, rank, axis=0))[0]
        macs.check()
    else:
        bits = bit_to_arith(ctx.narrow("to_arith"), digit, dtype)
        f = one_hot(ctx.narrow("one_hot"), bits)
        del bits
        dest = inner_product(ctx.narrow("rank"), f, _ranks(ctx, f), axis=0)
    return dest.add_public(ctx.party, -1)


def _ranks(ctx: Context, f: AShares) -> AShares:
    """Each row's rank among the rows of its digit value, offset by the rows of a smaller digit.

    Distributed, the ranks are global: the 2^d digit totals of each worker
    (both share components) are all-gathered among the helper's workers, and
    each row's rank is offset by the rows of a smaller digit in all workers
    plus those of its digit in the workers before this one.
    """
    rank = f.cumsum(axis=1)
    parts = (rank.left, rank.right)
    totals = [p[:, -1].copy() if p.shape[1] else np.zeros(p.shape[0], p.dtype) for p in parts]
    if ctx.distributed:
        gathered = ctx.all_gather("totals", totals)  # shares are linear: each component alone
        k = ctx.group().index
        for c, part in enumerate(parts):
            by_worker = np.stack([g[c] for g in gathered])
            everywhere = by_worker.sum(axis=0, dtype=part.dtype)
            before = by_worker[:k].sum(axis=0, dtype=part.dtype)
            part += (np.cumsum(everywhere, dtype=part.dtype) - everywhere + before)[:, None]
    else:
        for part, t in zip(parts, totals, strict=True):  # in place: rank_v += rows of a smaller digit
            part += (np.cumsum(t, dtype=part.dtype) - t)[:, None]
    return rank


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
    In malicious mode a pass authenticates the digit's share components (1
    round), checks its products' MACs (the keys' opening and one zero check
    per product call: 5 + ⌈log2 d⌉ rounds, :mod:`ipa.mpc.mac`) and adds the
    shuffle's tags, key opening and checks (3 rounds) to its move:
    Malicious cost: at most ``sum(15 + 2*log2(min(d, w - i*d)) for i in range(-(-w // d))) + 12`` rounds.

    **Distributed** (``ctx.distributed``, W workers): ``key`` and the payload
    are this worker's rows, the k-th contiguous block of the input order (any
    sizes, possibly empty); the result is this worker's block
    ``slices(n, W)[k]`` of the sorted rows, n the rows of all workers. Every
    triple runs the steps above on its block, with the same messages per row,
    so the cross-helper words summed over the triples are those of one
    process, and each triple's rounds are within the bound above. Among the
    workers of each helper: the block sizes (8 bytes), per pass the digit
    totals (8·2^d bytes) to every other worker, and the moves of
    :func:`~ipa.mpc.permute.move_rows`; with ``p`` the bytes of one payload
    row and ``W`` workers, per helper (summed over its workers):
    Collective cost: at most ``sum(28 + 4*(nbytes(w - (i+1)*d) if w > (i+1)*d else 0)
    + 8*W*(W-1)*2**min(d, w - i*d) / n for i in range(-(-w // d))) + 40 + 4*p + 8*W*(W-1) / n``
    bytes per row. In malicious mode every word is a uint64, the shuffles
    move their tags, and each triple has its own verifier (W verifiers: the
    caller gives each its share of the soundness budget):
    Malicious collective cost: at most ``sum((196 + 4*nbytes(w - (i+1)*d) if w > (i+1)*d else 148)
    + 16*W*(W-1)*2**min(d, w - i*d) / n for i in range(-(-w // d))) + 312 + 4*p + 8*W*(W-1) / n``
    bytes per row. Cross-helper, the words per row summed over the triples
    are those of one process, but the fixed costs (checkpoints, key
    openings, digests) are paid by every triple, W times in all: with even
    input blocks, triple k sends exactly what one process sorting its n_k
    rows sends, step by step.
    """
    ctx = ctx.enter(SORT_STEPS)
    if not 1 <= digit_bits <= 8:
        raise ValueError(f"digit_bits must be between 1 and 8, got {digit_bits}")
    if any(len(c) != len(key) for c in payload):
        raise ValueError("payload columns must have as many rows as the key")
    rows = ctx.gather_blocks(len(key)) if ctx.distributed else None
    n = len(key) if rows is None else rows.n
    if n >= 1 << 32:
        raise ValueError(f"sort handles fewer than 2^32 rows, got {n}")
    if ctx.malicious and not all(isinstance(c, BShares) for c in payload):
        raise ValueError("in malicious mode the sort's payload must be boolean columns")
    if n == 0:
        return list(payload)
    dtype = _MALICIOUS_INDEX if ctx.malicious else _INDEX
    k = 0 if ctx.collective is None else ctx.collective.index
    even = None if rows is None else Blocks.even(n, rows.workers)
    layout = rows
    here = slice(0, n) if rows is None else rows.rows(k)
    rest: BShares | None = key
    index = public(ctx.party, np.arange(here.start, here.stop), dtype)
    done, number = 0, 0
    while rest is not None:
        d = min(digit_bits, key.width - done)
        step = ctx.narrow("pass", number)
        dest = _destinations(step, rest.bits(0, d), dtype)
        done, number = done + d, number + 1
        rest = rest.shift_right(d) if done < key.width else None
        columns: list[_Pair] = [index] if rest is None else [index, rest]
        moved = move_rows(
            step.narrow("move"), dest, columns, rows=layout, to=even
        )  # keeps each column's kind
        index, rest = cast(AShares, moved[0]), (cast(BShares, moved[1]) if rest is not None else None)
        layout = even
    there = slice(0, n) if even is None else even.rows(k)
    positions = public(ctx.party, np.arange(there.start, there.stop), dtype)
    inverse = move_rows(ctx.narrow("invert"), index, [positions], rows=even, to=rows)[0]
    return move_rows(ctx.narrow("apply"), inverse, payload, rows=rows, to=even)
