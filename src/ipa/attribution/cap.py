"""Per-user contribution cap, in the order of the sorted rows.

Rows are sorted by (match key, constraint id, timestamp, sources first, input
order) and ``same_user`` marks rows whose match key equals the previous row's.
With ``v_i`` the attributed value (0 for unattributed rows), ``cum_i`` the
user's running sum up to row i, each row contributes

    min(cum_i, cap) − min(cum_i − v_i, cap)

so a user's contributions add up to ``min(total, cap)`` and the earliest
rows are kept whole.

Cost: the segmented running sum is a work-efficient (Brent–Kung) scan: at
most 3 words (64-bit) per row in about 2·log2 n rounds (doubling at every
row, before 2 December 2026, sent 2·log2 n words per row in log2 n rounds:
33 at 10^5 rows); the two comparisons with ``cap`` take the sign bit of
``cum − cap`` (:func:`ipa.mpc.convert.sign_bit`: 8 rounds, 35 bytes per value, no
comparator circuit and no full A2B), then bit→arith (2
rounds) and one multiply, after the flags' bit→arith (2) and the value
multiply (1): at most 2·⌈log2 n⌉ + 14 rounds. Parties learn nothing.

**Distributed** (W workers per helper, :func:`running_sum`): each triple
sums its block, carrying the product of the ``same_user`` flags since the
block's start; one all-gather inside each helper gives every worker each
block's last (sum, flag), from which triple k computes the sum carried into
its block (the same running sum over the k blocks before it) and adds it
to the rows that continue the user of the row before the block (one
multiplication). The comparisons with the cap are per row, unchanged.
"""

from __future__ import annotations

import numpy as np

from ipa.mpc.context import Context
from ipa.mpc.convert import BIT_TO_ARITH_STEPS, SIGN_BIT_STEPS, bit_to_arith, sign_bit
from ipa.mpc.multiply import multiply
from ipa.mpc.replicated import AShares, BShares, public, repeat, stack
from ipa.mpc.step import Family, Steps

__all__ = ["CAP_STEPS", "RUNNING_SUM_STEPS", "cap_contributions", "running_sum"]

_CARRY_STEPS = Steps("running_sum.carry", up=Family(32), down=Family(32))
RUNNING_SUM_STEPS = Steps("running_sum", "fix_up", up=Family(32), down=Family(32), carry=_CARRY_STEPS)
"""⌊log2 n⌋ levels up and as many down, n < 2^32 rows (the sort's limit); ``carry`` and ``fix_up``
only when the rows are spread over a helper's workers."""
_MIN_STEPS = Steps("cap.min", "select", sign=SIGN_BIT_STEPS, to_arith=BIT_TO_ARITH_STEPS)
CAP_STEPS = Steps("cap", "value", to_arith=BIT_TO_ARITH_STEPS, running_sum=RUNNING_SUM_STEPS, min=_MIN_STEPS)

_RING = np.dtype(np.uint64)


def running_sum(ctx: Context, values: AShares, same_user: AShares) -> AShares:
    """Segmented prefix sums: ``cum_i = Σ v_j`` over rows j ≤ i of row i's user.

    ``same_user`` is arithmetic 0/1; a work-efficient scan (:func:`_segmented_scan`):
    at most 3 words per row in ⌊log2 n⌋ rounds up and as many down (fewer when
    n < 3·2^(⌊log2 n⌋ − 1)).
    Cost: ``log2(n + 1) - 1 + sum(1 for d in range(log2(n + 1) - 1) if n >= 3 << d)`` rounds,
    ``sum(2 * (n >> (d + 1)) + ((n - (1 << d)) >> (d + 1))
    for d in range(log2(n + 1) - 1)) / max(n, 1)`` words per row.

    **Distributed** (``ctx.distributed``): ``values`` and ``same_user`` are this
    worker's block (``same_user`` of its first row compares it with the row
    before the block); its scan's down-sweep multiplies both columns too (the
    flags' product since the block's start is needed whole), then the carry
    over the blocks before this one (the same scan on k words) and one
    multiplication per row add what the user had before the block. Per
    helper, each worker sends every other its block's last sum and flag:
    Collective cost: at most ``W*(W - 1)*32/n`` bytes per row.
    """
    ctx = ctx.enter(RUNNING_SUM_STEPS)
    if not ctx.distributed:
        return _segmented_scan(ctx, values, same_user, whole=False)[0]
    cum, span = _segmented_scan(ctx, values, same_user, whole=True)
    carry = _carry_into_block(ctx, cum, span)
    if carry is None or len(cum) == 0:
        return cum
    here = carry.map(lambda a: np.broadcast_to(a, cum.shape))
    return cum + multiply(ctx.narrow("fix_up"), span, here)


def _segmented_scan(ctx: Context, values: AShares, span: AShares, *, whole: bool) -> tuple[AShares, AShares]:
    """The segmented running sums, and (if ``whole``) the flags' product since row 0.

    A work-efficient (Brent–Kung) scan of the pairs (v_i, f_i) under
    ``(v, f) ∘ (v', f') = (v' + f'·v, f'·f)``: an up-sweep of ⌊log2 n⌋ levels
    combines the blocks of 2, 4, … rows ending at rows 2^(d+1)·j − 1
    (``n >> (d+1)`` pairs at level d, two products each); a down-sweep of the
    same levels, highest first, completes the rows in between
    (``(n − 2^d) >> (d+1)`` pairs at level d, one product each, two if
    ``whole``). So at most 3 words per row (4 if ``whole``) in about 2·log2 n
    rounds, where doubling at every row took 2·log2 n words in log2 n rounds.

    With ``whole`` the rows before row 0 count as the same user (their flags
    are public ones, their values zero), so ``span_i`` ends as the product of
    the flags of rows 0 … i; otherwise the down-sweep leaves ``span`` unfinished.
    The operands of each product are fresh arrays, not views of the columns
    the scan updates in place (a malicious-mode record keeps them).
    """
    n = values.shape[-1]
    cum, span = values.map(np.copy), span.map(np.copy)
    levels = max(n.bit_length() - 1, 0)  # ⌊log2 n⌋
    for d in range(levels):
        _combine(ctx.narrow("up", d), cum, span, first=(1 << (d + 1)) - 1, d=d, flags=True)
    for d in reversed(range(levels)):
        _combine(ctx.narrow("down", d), cum, span, first=3 * (1 << d) - 1, d=d, flags=whole)
    return cum, span


def _combine(ctx: Context, cum: AShares, span: AShares, *, first: int, d: int, flags: bool) -> None:
    """In place, rows ``first, first + 2^(d+1), …`` absorb the rows 2^d before them (one round)."""
    n = cum.shape[-1]
    if first >= n:
        return
    right, left = np.s_[..., first :: 2 << d], np.s_[..., first - (1 << d) : n - (1 << d) : 2 << d]
    f = span[right].map(np.array)
    if flags:
        both = multiply(ctx, repeat(f, 2), stack([cum[left], span[left]]))
        cum.left[right] += both.left[0]
        cum.right[right] += both.right[0]
        span.left[right], span.right[right] = both.left[1], both.right[1]
    else:
        carried = multiply(ctx, f, cum[left].map(np.array))
        cum.left[right] += carried.left
        cum.right[right] += carried.right


def _carry_into_block(ctx: Context, cum: AShares, span: AShares) -> AShares | None:
    """The running sum at the row before this worker's block (None for the first worker).

    Every worker shares its block's last (sum, flag) with the others (an
    empty block passes the carry through: sum 0, flag 1); then block j's end
    holds ``G_j = c_j + p_j · G_(j−1)``, the running sum itself over the
    blocks, of which this triple needs the k-th.
    """
    ends = [public(ctx.party, np.zeros(1), _RING), public(ctx.party, np.ones(1), _RING)]
    if len(cum):
        ends = [cum.map(lambda a: a[..., -1:]), span.map(lambda a: a[..., -1:])]
    gathered = ctx.all_gather("ends", [part for end in ends for part in (end.left, end.right)])
    k = ctx.group().index
    if k == 0:
        return None
    sums, flags = (
        AShares(
            np.concatenate([g[i] for g in gathered[:k]]), np.concatenate([g[i + 1] for g in gathered[:k]])
        )
        for i in (0, 2)
    )
    carried, _ = _segmented_scan(ctx.narrow("carry"), sums, flags, whole=False)
    return carried.map(lambda a: a[..., -1:])


def _min_with_public(ctx: Context, x: AShares, bound: int) -> AShares:
    """``min(x, bound) = bound + [x < bound]·(x − bound)`` elementwise for x, bound < 2^63 (any
    shape); ``x < bound`` is the sign bit of ``x − bound`` in Z_2^64 (:func:`sign_bit`)."""
    ctx = ctx.enter(_MIN_STEPS)
    over = x.add_public(ctx.party, -bound)
    below = bit_to_arith(ctx.narrow("to_arith"), sign_bit(ctx.narrow("sign"), over), _RING)
    return multiply(ctx.narrow("select"), below, over).add_public(ctx.party, bound)


def _running_totals(ctx: Context, attributed: BShares, value: AShares, same_user: BShares) -> AShares:
    """Stacked shares of each row's user total up to and including it, and up to before it."""
    flags = bit_to_arith(ctx.narrow("to_arith"), stack([attributed, same_user]), _RING)
    v = multiply(ctx.narrow("value"), flags[0], value)
    cum = running_sum(ctx.narrow("running_sum"), v, flags[1])
    return stack([cum, cum - v])


def cap_contributions(
    ctx: Context, attributed: BShares, value: AShares, same_user: BShares, cap: int
) -> AShares:
    """Each row's capped contribution in Z_2^64 (0 for unattributed rows), for n rows.

    The running sum sends :func:`running_sum`'s words (at most 3 per row).
    Cost: at most ``14 + 2 * log2(n)`` rounds,
    ``tuple(w + sum(2 * (n >> (d + 1)) + ((n - (1 << d)) >> (d + 1))
    for d in range(log2(n + 1) - 1)) / max(n, 1) for w in (19.75, 15.75, 15.75))`` words per row.
    Distributed over ``W`` workers (:func:`running_sum`), per helper:
    Collective cost: at most ``W*(W - 1)*32/n`` bytes per row.
    """
    ctx = ctx.enter(CAP_STEPS)
    totals = _running_totals(ctx, attributed, value, same_user)  # its temporaries die on return
    capped = _min_with_public(ctx.narrow("min"), totals, cap)
    return capped[0] - capped[1]
