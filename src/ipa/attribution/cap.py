"""Per-user contribution cap, in the order of the sorted rows.

Rows are sorted by (match key, constraint id, timestamp, sources first, input
order) and ``same_user`` marks rows whose match key equals the previous row's.
With ``v_i`` the attributed value (0 for unattributed rows), ``cum_i`` the
user's running sum up to row i, each row contributes

    min(cum_i, cap) − min(cum_i − v_i, cap)

so a user's contributions add up to ``min(total, cap)`` and the earliest
rows are kept whole.

Cost: the segmented running sum by doubling takes ⌈log2 n⌉ rounds of 2 words
(64-bit) per row; the two comparisons with ``cap`` take the sign bit of
``cum − cap`` by A2B (8 rounds; no comparator circuit), then bit→arith (2
rounds) and one multiply, after the flags' bit→arith (2) and the value
multiply (1): at most ⌈log2 n⌉ + 14 rounds (a doubling level may overlap
the next step's first round). Parties learn nothing.

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
from ipa.mpc.convert import ARITH_TO_BOOL_STEPS, BIT_TO_ARITH_STEPS, arith_to_bool, bit_to_arith
from ipa.mpc.multiply import multiply
from ipa.mpc.replicated import AShares, BShares, public, repeat, stack
from ipa.mpc.step import Family, Steps

__all__ = ["CAP_STEPS", "RUNNING_SUM_STEPS", "cap_contributions", "running_sum"]

_CARRY_STEPS = Steps("running_sum.carry", level=Family(32))
RUNNING_SUM_STEPS = Steps("running_sum", "fix_up", level=Family(32), carry=_CARRY_STEPS)
"""⌈log2 n⌉ doubling levels, n < 2^32 rows (the sort's limit); ``carry`` and ``fix_up``
only when the rows are spread over a helper's workers."""
_MIN_STEPS = Steps("cap.min", "select", to_bool=ARITH_TO_BOOL_STEPS, to_arith=BIT_TO_ARITH_STEPS)
CAP_STEPS = Steps("cap", "value", to_arith=BIT_TO_ARITH_STEPS, running_sum=RUNNING_SUM_STEPS, min=_MIN_STEPS)

_RING = np.dtype(np.uint64)


def running_sum(ctx: Context, values: AShares, same_user: AShares) -> AShares:
    """Segmented prefix sums: ``cum_i = Σ v_j`` over rows j ≤ i of row i's user.

    ``same_user`` is arithmetic 0/1. Each level but the last multiplies two columns.
    Cost: ``log2(n)`` rounds, ``max(2*log2(n) - 1, 0)`` words per row.

    **Distributed** (``ctx.distributed``): ``values`` and ``same_user`` are this
    worker's block (``same_user`` of its first row compares it with the row
    before the block); each level multiplies both columns (the flags'
    product since the block's start is needed whole), then the carry over
    the blocks before this one (⌈log2 k⌉ levels on k words) and one
    multiplication per row add what the user had before the block. Per
    helper, each worker sends every other its block's last sum and flag:
    Collective cost: at most ``W*(W - 1)*32/n`` bytes per row.
    """
    ctx = ctx.enter(RUNNING_SUM_STEPS)
    if not ctx.distributed:
        return _doubling(ctx, values, same_user, whole=False)[0]
    cum, span = _doubling(ctx, values, same_user, whole=True)
    carry = _carry_into_block(ctx, cum, span)
    if carry is None or len(cum) == 0:
        return cum
    here = carry.map(lambda a: np.broadcast_to(a, cum.shape))
    return cum + multiply(ctx.narrow("fix_up"), span, here)


def _doubling(ctx: Context, values: AShares, span: AShares, *, whole: bool) -> tuple[AShares, AShares]:
    """The segmented running sums by doubling, and (if ``whole``) the flags' product since row 0.

    With ``whole`` the rows before row 0 count as the same user (their flags
    are public ones, their values zero), so ``span_i`` ends as the product of
    the flags of rows 0 … i; otherwise the last level skips it.
    """
    n, shift, level = len(values), 1, 0
    cum = values
    while shift < n:
        step = ctx.narrow("level", level)
        if 2 * shift >= n and not whole:
            cum = cum + multiply(step, span, cum.lag(shift))
        else:
            earlier = span.lag(shift)
            if whole:
                earlier = earlier.add_public(ctx.party, (np.arange(n) < shift).astype(span.dtype))
            both = multiply(step, repeat(span, 2), stack([cum.lag(shift), earlier]))
            cum, span = cum + both[0], both[1]
        shift, level = 2 * shift, level + 1
    return cum, span


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
    carried, _ = _doubling(ctx.narrow("carry"), sums, flags, whole=False)
    return carried.map(lambda a: a[..., -1:])


def _min_with_public(ctx: Context, x: AShares, bound: int) -> AShares:
    """``min(x, bound) = bound + [x < bound]·(x − bound)`` elementwise for x, bound < 2^63 (any
    shape); ``x < bound`` is the sign bit of ``x − bound`` in Z_2^64, from its A2B."""
    ctx = ctx.enter(_MIN_STEPS)
    over = x.add_public(ctx.party, -bound)
    sign = arith_to_bool(ctx.narrow("to_bool"), over).shift_right(63)
    below = bit_to_arith(ctx.narrow("to_arith"), sign, _RING)
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

    Cost: at most ``14 + log2(n)`` rounds,
    ``(37 + max(2*log2(n) - 1, 0), 33 + max(2*log2(n) - 1, 0), 33 + max(2*log2(n) - 1, 0))``
    words per row.
    Distributed over ``W`` workers (:func:`running_sum`), per helper:
    Collective cost: at most ``W*(W - 1)*32/n`` bytes per row.
    """
    ctx = ctx.enter(CAP_STEPS)
    totals = _running_totals(ctx, attributed, value, same_user)  # its temporaries die on return
    capped = _min_with_public(ctx.narrow("min"), totals, cap)
    return capped[0] - capped[1]
