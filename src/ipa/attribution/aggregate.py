"""Sum contributions per breakdown key without revealing any row's key.

With ``b`` split into a high half h and a low half l of its bits, every row
gets one-hot indicators ``H[u] = [h == u]`` and ``L[v] = [l == v]`` (products
of its arithmetic bits, as in the sort). Then ``T[u] = c·H[u]`` (one
multiplication per high value) and

    sum[b] = Σ_i T[h(b)]_i · L[l(b)]_i

is an inner product over rows: all 2^w sums cost one reshare of 2^w words in
total, however many rows there are. Keys ≥ B are computed and dropped.

Only the low u = ⌈log2 B⌉ bits of a key are summed over when B is less than
2^w (16 breakdowns of an 8-bit key: u = 4): a key with any higher bit set
is ≥ B and adds to no sum, so each contribution is first multiplied by
``[high bits all zero]`` (:func:`in_range`, about 3 words per row) and the
one-hots, the weighted columns and the matrix product then span 2^u keys
instead of 2^w. For 16 breakdowns of 8-bit keys that cuts the aggregate's
bytes per row from 440 to 140 (H1), its memory about fourfold, and its
matrix product from 16 × 16 to 4 × 4 outputs.

Cost per row for w-bit keys: 2w words (H1) or w words (H2, H3) for
bit→arith, plus for every party
2^⌈w/2⌉ + 2^⌊w/2⌋ − w − 2 (one-hots) + 2^⌊w/2⌋ (T) words of 64 bits,
and 2^w words in all for the sums; :func:`aggregate` gives the exact figures.
Local work: two (2^⌊w/2⌋ × n)·(n × 2^⌈w/2⌉) integer matrix products.
Parties learn nothing.
"""

from __future__ import annotations

import numpy as np

from ipa.mpc.context import Context
from ipa.mpc.convert import BIT_TO_ARITH_STEPS, bit_to_arith
from ipa.mpc.multiply import and_, cross_terms, multiply, reshare
from ipa.mpc.one_hot import ONE_HOT_STEPS, Monomials, monomials
from ipa.mpc.replicated import AShares, BShares
from ipa.mpc.step import Family, Steps
from ipa.mpc.verifier import Product, Split

__all__ = ["AGGREGATE_STEPS", "IN_RANGE_STEPS", "aggregate", "in_range", "key_bits"]

IN_RANGE_STEPS = Steps("in_range", "weight", level=Family(6), to_arith=BIT_TO_ARITH_STEPS)

AGGREGATE_STEPS = Steps(
    "aggregate",
    "weight",
    "sums",
    to_arith=BIT_TO_ARITH_STEPS,
    one_hot_low=ONE_HOT_STEPS,
    one_hot_high=ONE_HOT_STEPS,
    in_range=IN_RANGE_STEPS,
)

_RING = np.dtype(np.uint64)


_BLOCK = 1 << 15
"""Rows per block where the indicators are formed and consumed: their (16, block) words
and the matching products take a few MiB whatever n, and a block is long enough that
numpy's per-call cost does not show."""


def aggregate(ctx: Context, contribution: AShares, breakdown_key: BShares, num_breakdowns: int) -> AShares:
    """Shares of the ``num_breakdowns`` sums of ``contribution`` grouped by ``breakdown_key``.

    For n rows and w-bit keys split into ``l`` = ⌈w/2⌉ low and ``h`` = ⌊w/2⌋ high
    bits, with ``num_breakdowns`` = 2^w (w = 8: 8 rounds, 58 or 50 words per
    row and 256 words in all; with fewer breakdowns, :func:`in_range` first and
    then this cost for w = ⌈log2 B⌉, :func:`key_bits`):
    Cost: ``3 + log2(l) + log2(h) + min(h, 1)`` rounds,
    ``tuple(k*w + 2**l - l - 1 + 2**h - h - 1 + min(h, 1)*2**h + 2**w/n for k in (2, 1, 1))``
    words per row.

    Memory: the one-hot indicators are never held for all rows. Each one-hot
    is kept as its products (:class:`~ipa.mpc.one_hot.Monomials`) and turned
    into indicators block by block where it is used, by the same linear map, so
    the weight's and the sums' local terms, hence their messages, are those of
    ``multiply(hi, c)`` and ``matmul(T, lo)``. The high one-hot and the weight
    come before the low one-hot (the same messages and rounds as the other
    order), so the high products are freed before the low ones are made.
    In malicious mode too: each block is recorded for the checkpoints as a
    product of its own (the weight's) or a part of the matrix product (the
    sums', :class:`~ipa.mpc.verifier.Split`), its indicators formed again, so
    the verifier, which may verify them as soon as it holds a chunk
    (:class:`ipa.attribution.pipeline.Verification`), never pins them for all
    rows either (the same messages; with one block, the same records as
    ``multiply`` and ``matmul``).
    """
    ctx = ctx.enter(AGGREGATE_STEPS)
    used = key_bits(num_breakdowns)
    if used < breakdown_key.width:  # keys ≥ 2^used add to no sum: only the low bits are needed
        contribution = in_range(ctx.narrow("in_range"), contribution, breakdown_key, used)
        breakdown_key = breakdown_key.resize(used)
    width = breakdown_key.width
    low = (width + 1) // 2
    bits = bit_to_arith(ctx.narrow("to_arith"), breakdown_key.bits(0, width), _RING)
    weighted = contribution.map(lambda a: a[None, :])
    if width > low:
        hi = monomials(ctx.narrow("one_hot_high"), bits[low:])
        weighted = _weigh(ctx.narrow("weight"), hi, contribution)
        del hi
    low_bits = bits[:low].map(np.copy)
    del bits  # its high half is no longer read
    lo = monomials(ctx.narrow("one_hot_low"), low_bits)
    sums = _sums(ctx.narrow("sums"), weighted, lo)  # sums[u, v] = Σ_i weighted[u, i] · lo[v, i]
    flat = sums.map(lambda a: a.reshape(-1))  # index u·2^low + v is the key (u, v)
    return flat[:num_breakdowns]


def key_bits(num_breakdowns: int) -> int:
    """The low bits of a breakdown key that :func:`aggregate` sums over: ⌈log2 B⌉, at least 1."""
    return max(1, (num_breakdowns - 1).bit_length())


def in_range(ctx: Context, contribution: AShares, breakdown_key: BShares, bits: int) -> AShares:
    """``contribution · [breakdown_key < 2^bits]``: the contributions of keys whose bits from
    ``bits`` up are all zero, and 0 for the others (``bits`` < the key's width w).

    :func:`aggregate` calls it when ``num_breakdowns`` ≤ 2^``bits`` < 2^w, so
    that its one-hots, its weighted columns and its matrix product span
    2^``bits`` keys instead of 2^w (keys from ``num_breakdowns`` up were
    computed and dropped either way). The high bits' NOR is an AND tree of
    the inverted bits (inverting is local), turned into an arithmetic bit and
    multiplied in. With k = w − ``bits`` high bits:
    Cost: ``log2(k) + 3`` rounds, ``tuple((k - 1) / 8 + c for c in (3, 2, 2))`` words per row.
    Parties learn nothing.
    """
    ctx = ctx.enter(IN_RANGE_STEPS)
    high = breakdown_key.width - bits
    zero = breakdown_key.bits(bits, high).invert(ctx.party)
    for level in range((high - 1).bit_length()):  # AND pairs of columns until one is left
        half = zero.shape[0] // 2
        paired = and_(ctx.narrow("level", level), zero[:half], zero[half : 2 * half])
        odd = zero[2 * half :]  # a column without a pair waits for the next level
        zero = paired.like(np.concatenate([paired.left, odd.left]), np.concatenate([paired.right, odd.right]))
    indicator = bit_to_arith(ctx.narrow("to_arith"), zero[0], contribution.dtype)
    return multiply(ctx.narrow("weight"), contribution, indicator)


def _blocks(n: int) -> list[slice]:
    """The row blocks (one, empty, if there are no rows)."""
    return [slice(start, start + _BLOCK) for start in range(0, max(n, 1), _BLOCK)]


def _weigh(ctx: Context, hi: Monomials, c: AShares) -> AShares:
    """``T[u] = c·H[u]`` for the 2^h high indicators H: ``multiply(H, c)``, in row blocks.

    In malicious mode each block is recorded as a product of its own (the
    indicators formed again), so the verifier never needs H for all rows.
    """
    n = len(c)
    z = ctx.prss.zero(ctx.step, (1 << hi.d, n), _RING)

    def operands(rows: slice) -> tuple[AShares, AShares]:
        f = hi.indicators(rows)
        return f, AShares(np.broadcast_to(c.left[rows], f.shape), np.broadcast_to(c.right[rows], f.shape))

    for rows in _blocks(n):
        f, c_rows = operands(rows)
        z[:, rows] = cross_terms(f, c_rows, z[:, rows])
    weighted = AShares(z, reshare(ctx, z))
    if ctx.verifier is not None:
        for rows in _blocks(n):
            ctx.verifier.record(Product("multiply", *operands(rows), weighted[:, rows]))
    return weighted


def _sums(ctx: Context, weighted: AShares, lo: Monomials) -> AShares:
    """``weighted @ Lᵀ`` for the 2^l low indicators L: ``matmul(weighted, L)``, in row blocks.

    In malicious mode each block is recorded as a part of the matrix product
    (a slice of its terms, :class:`~ipa.mpc.verifier.Split`), the indicators
    formed again, so the verifier never needs L for all rows.
    """
    n = len(weighted)
    local = np.zeros((weighted.shape[0], 1 << lo.d), _RING)
    for rows in _blocks(n):
        f = lo.indicators(rows)
        t = weighted[:, rows]
        local += t.left @ (f.left + f.right).T
        local += t.right @ f.left.T
    z = local + ctx.prss.zero(ctx.step, local.shape, _RING)
    sums = AShares(z, reshare(ctx, z))
    if ctx.verifier is not None:
        blocks = _blocks(n)
        split = Split(sums, len(blocks)) if len(blocks) > 1 else None
        for rows in blocks:
            ctx.verifier.record(Product("matmul", weighted[:, rows], lo.indicators(rows), sums, split=split))
    return sums
