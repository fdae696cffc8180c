"""Sum contributions per breakdown key without revealing any row's key.

With ``b`` split into a high half h and a low half l of its bits, every row
gets one-hot indicators ``H[u] = [h == u]`` and ``L[v] = [l == v]`` (products
of its arithmetic bits, as in the sort). Then ``T[u] = c·H[u]`` (one
multiplication per high value) and

    sum[b] = Σ_i T[h(b)]_i · L[l(b)]_i

is an inner product over rows: all 2^w sums cost one reshare of 2^w words in
total, however many rows there are. Keys ≥ B are computed and dropped.

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
from ipa.mpc.multiply import matmul, multiply
from ipa.mpc.one_hot import ONE_HOT_STEPS, one_hot
from ipa.mpc.replicated import AShares, BShares
from ipa.mpc.step import Steps

__all__ = ["AGGREGATE_STEPS", "aggregate"]

AGGREGATE_STEPS = Steps(
    "aggregate",
    "weight",
    "sums",
    to_arith=BIT_TO_ARITH_STEPS,
    one_hot_low=ONE_HOT_STEPS,
    one_hot_high=ONE_HOT_STEPS,
)

_RING = np.dtype(np.uint64)


def aggregate(ctx: Context, contribution: AShares, breakdown_key: BShares, num_breakdowns: int) -> AShares:
    """Shares of the ``num_breakdowns`` sums of ``contribution`` grouped by ``breakdown_key``.

    For n rows and w-bit keys split into ``l`` = ⌈w/2⌉ low and ``h`` = ⌊w/2⌋ high
    bits (w = 8: 8 rounds, 58 or 50 words per row and 256 words in all):
    Cost: ``3 + log2(l) + log2(h) + min(h, 1)`` rounds,
    ``tuple(k*w + 2**l - l - 1 + 2**h - h - 1 + min(h, 1)*2**h + 2**w/n for k in (2, 1, 1))``
    words per row.
    """
    ctx = ctx.enter(AGGREGATE_STEPS)
    width = breakdown_key.width
    low = (width + 1) // 2
    bits = bit_to_arith(ctx.narrow("to_arith"), breakdown_key.bits(0, width), _RING)
    lo = one_hot(ctx.narrow("one_hot_low"), bits[:low])
    hi = one_hot(ctx.narrow("one_hot_high"), bits[low:]) if width > low else None
    weighted = contribution.map(lambda a: a[None, :])
    if hi is not None:
        weighted = multiply(ctx.narrow("weight"), hi, weighted.map(lambda a: np.broadcast_to(a, hi.shape)))
    sums = matmul(ctx.narrow("sums"), weighted, lo)  # sums[u, v] = Σ_i weighted[u, i] · lo[v, i]
    flat = sums.map(lambda a: a.reshape(-1))  # index u·2^low + v is the key (u, v)
    return flat[:num_breakdowns]
