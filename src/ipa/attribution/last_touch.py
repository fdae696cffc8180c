"""Last-touch attribution: each trigger finds the latest earlier source of its group.

Input rows are in group order with ``same_group`` flags. Each row carries a
packed word ``valid | breakdown_key | timestamp`` where ``valid`` marks a
source. A segmented "latest valid" prefix scan by doubling (s = 1, 2, …, K/2)
lets row i look back over rows i−K+1 … i of its own group:

- round A: ``take = span & ~valid`` (row i has nothing yet and row i−s is in
  its group) and, batched with it, ``span ← span & span[i−s]``;
- round B: ``word ← word ^ (take & (word ^ word[i−s]))``.

A trigger is attributed when the scan found a source (``valid``) and, with a
window W, ``t_trigger − t_source ≤ W``: the sign bit of
``t_trigger + ~t_source + 2^(b+2) − W`` in b+2 bits, one carry-save step and
the top bit of their sum (:func:`ipa.mpc.adder.top_bit`).

Cost: the scan takes 2·log2 K rounds, each level sending 2 bytes of flags (1
in the last) and one packed word; one AND with ``is_trigger``; with a window,
a carry-save step and the top bit of the (b+2)-bit sum (1 + 1 + ⌈log2(b+1)⌉ rounds), then
one AND with the result. :func:`last_touch` gives the exact figures.
Parties learn nothing.

**Distributed** (W workers per helper): a row's result depends only on
itself and the K − 1 rows before it, so each worker prepends the K − 1 rows
before its block (:func:`ipa.mpc.halo.with_halo`) and drops their results;
the triples' messages are those of at most n + (W − 1)(K − 1) rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ipa.mpc.adder import TOP_BIT_STEPS, carry_save, top_bit
from ipa.mpc.context import Context
from ipa.mpc.halo import with_halo, without_halo
from ipa.mpc.multiply import and_
from ipa.mpc.replicated import BShares, public_bits, repeat, stack
from ipa.mpc.step import Family, Steps

__all__ = ["LAST_TOUCH_STEPS", "Attribution", "last_touch"]

_SCAN_STEPS = Steps("last_touch.scan", level=Family(20, Steps("last_touch.scan.level", "take", "copy")))
"""log2 K doubling levels, K ≤ 2^20."""
_WINDOW_STEPS = Steps("last_touch.window", "carry_save", top=TOP_BIT_STEPS)
LAST_TOUCH_STEPS = Steps("last_touch", "is_trigger", "in_window", scan=_SCAN_STEPS, window=_WINDOW_STEPS)


@dataclass(frozen=True)
class Attribution:
    """Per row: whether it is an attributed trigger, and its source's breakdown key."""

    attributed: BShares  # 1 bit
    breakdown_key: BShares


def _scan(ctx: Context, word: BShares, span: BShares, max_events_per_user: int) -> BShares:
    """Segmented latest-valid scan; ``valid`` is the top bit of ``word``."""
    ctx = ctx.enter(_SCAN_STEPS)
    top = word.width - 1
    shift, level = 1, 0
    while shift < max_events_per_user:
        step = ctx.narrow("level", level)
        valid = word.shift_right(top)
        last = 2 * shift >= max_events_per_user
        if last:
            take = and_(step.narrow("take"), span, valid.invert(ctx.party))
        else:
            both = and_(
                step.narrow("take"), repeat(span, 2), stack([valid.invert(ctx.party), span.lag(shift)])
            )
            take, span = both[0], both[1]
        word = word ^ and_(step.narrow("copy"), take.expand(word.width), word ^ word.lag(shift))
        shift, level = 2 * shift, level + 1
    return word


def _within_window(ctx: Context, t_trigger: BShares, t_source: BShares, window: int) -> BShares:
    """``t_trigger − t_source ≤ window`` for timestamps of b bits (t_trigger ≥ t_source)."""
    ctx = ctx.enter(_WINDOW_STEPS)
    width = t_trigger.width + 2
    constant = ((1 << width) - window) % (1 << width)  # −window mod 2^width
    offset = public_bits(ctx.party, np.full(len(t_trigger), constant, np.uint64), width)
    s, c = carry_save(
        ctx.narrow("carry_save"), t_trigger.resize(width), t_source.resize(width).invert(ctx.party), offset
    )
    return top_bit(ctx.narrow("top"), s, c)  # of t_trigger − t_source − window − 1, mod 2^width


def last_touch(
    ctx: Context,
    same_group: BShares,
    is_trigger: BShares,
    breakdown_key: BShares,
    timestamp: BShares,
    *,
    max_events_per_user: int,
    window: int | None,
) -> Attribution:
    """Attribute each trigger to the latest source at most K−1 rows back in its group.

    With ``tb``-bit timestamps, ``bb``-bit breakdown keys, and ``W`` 1 with a
    window, 0 without (for K = 64, tb = 32, bb = 8: 13 or 22 rounds, 60 or 96 bytes):
    Cost: ``2*log2(K) + 1 + W*(3 + log2(tb + 1))`` rounds,
    ``max(2*log2(K), 1) + log2(K)*nbytes(1 + bb + tb)
    + W*(2*nbytes(tb + 2) + sum(2 * nbytes(2**log2(tb + 1) >> j) for j in range(1, log2(tb + 1))) + 2)``
    bytes per row.
    Distributed over ``W`` workers, their K − 1 rows of halo each (per helper):
    Collective cost: at most ``W*(W - 1)*(K - 1)*2*(2 + nbytes(bb) + nbytes(tb))/n`` bytes per row.
    """
    ctx = ctx.enter(LAST_TOUCH_STEPS)
    halo = max_events_per_user - 1
    columns, prepended = with_halo(ctx, "halo", [same_group, is_trigger, breakdown_key, timestamp], halo)
    same_group, is_trigger, breakdown_key, timestamp = columns
    tb, bb = timestamp.width, breakdown_key.width
    width = 1 + bb + tb
    word = (
        is_trigger.invert(ctx.party).resize(width).shift_left(bb + tb)
        ^ breakdown_key.resize(width).shift_left(tb)
        ^ timestamp.resize(width)
    )
    found = _scan(ctx.narrow("scan"), word, same_group, max_events_per_user)
    valid = found.shift_right(bb + tb)
    source_key = found.shift_right(tb).resize(bb)
    attributed = and_(ctx.narrow("is_trigger"), is_trigger, valid)
    if window is not None:
        within = _within_window(ctx.narrow("window"), timestamp, found.resize(tb), window)
        attributed = and_(ctx.narrow("in_window"), attributed, within)
    attributed, source_key = without_halo([attributed, source_key], prepended)
    return Attribution(attributed, source_key)
