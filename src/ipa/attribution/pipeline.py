"""The whole IPA query on generic rows: sort, last touch, cap, aggregate, noise.

Phases and what they cost are documented in each module; ``QueryResult.seconds``
records the wall time of each phase as this party saw it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ipa.attribution.aggregate import AGGREGATE_STEPS, aggregate
from ipa.attribution.boundaries import BOUNDARIES_STEPS, adjacent_equal
from ipa.attribution.cap import CAP_STEPS, cap_contributions
from ipa.attribution.config import QueryConfig
from ipa.attribution.last_touch import LAST_TOUCH_STEPS, last_touch
from ipa.attribution.rows import SharedRows
from ipa.attribution.sites import NEUTRALISE_STEPS, neutralise
from ipa.mpc.context import Context, NoiseHook
from ipa.mpc.convert import BOOL_TO_ARITH_STEPS, bool_to_arith
from ipa.mpc.replicated import AShares, BShares, public
from ipa.mpc.sort import SORT_STEPS, sort
from ipa.mpc.step import Steps

__all__ = ["PHASES", "QUERY_STEPS", "NoiseHook", "PhaseHook", "QueryResult", "no_noise", "run_query"]

QUERY_STEPS = Steps(
    "query",
    "noise",
    neutralise=NEUTRALISE_STEPS,
    sort=SORT_STEPS,
    boundaries=BOUNDARIES_STEPS,
    last_touch=LAST_TOUCH_STEPS,
    value_to_arith=BOOL_TO_ARITH_STEPS,
    cap=CAP_STEPS,
    aggregate=AGGREGATE_STEPS,
)
"""The query's step tree; ``tests/golden/steps.txt`` keeps it and its sub-trees under review.
The noise hook runs at the leaf ``noise`` (one-step protocols only)."""

PHASES = ("sort", "attribute", "cap", "aggregate", "noise")


def no_noise(ctx: Context, sums: AShares) -> AShares:
    """The noise hook of a test network: release the exact sums."""
    return sums


@dataclass
class QueryResult:
    """This party's shares of the B sums and the seconds it spent per phase."""

    sums: AShares
    seconds: dict[str, float] = field(default_factory=dict)


PhaseHook = Callable[[str], None]
"""Called with each phase's name as it finishes (progress reporting)."""


class _Clock:
    def __init__(self, on_phase: PhaseHook | None) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()
        self._on_phase = on_phase

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = now - self._last
        self._last = now
        if self._on_phase:
            self._on_phase(phase)


def _sorted_columns(ctx: Context, rows: SharedRows, config: QueryConfig) -> tuple[BShares, ...]:
    """Rows stably sorted by (match key, constraint id), unpacked again after the sort."""
    cb, tb, bb = config.constraint_bits, config.timestamp_bits, config.breakdown_bits
    key_width, info_width = config.match_key_bits + cb, 1 + bb + tb
    key = rows.match_key.resize(key_width).shift_left(cb) ^ rows.constraint_id.resize(key_width)
    info = (
        rows.is_trigger.resize(info_width).shift_left(bb + tb)
        ^ rows.breakdown_key.resize(info_width).shift_left(tb)
        ^ rows.timestamp.resize(info_width)
    )
    key, info, value = sort(ctx, key, [key, info, rows.trigger_value])
    return key, info.shift_right(bb + tb), info.shift_right(tb).resize(bb), info.resize(tb), value


def run_query(
    ctx: Context,
    rows: SharedRows,
    config: QueryConfig,
    noise: NoiseHook = no_noise,
    on_phase: PhaseHook | None = None,
) -> QueryResult:
    """Shares of the B attributed, capped, noised sums of ``rows`` (see ``ipa.reference``).

    Every helper learns n, ``config`` and the public ``rows.off_site``;
    nothing else is opened to it. Off-site rows on the querying side are
    neutralised first (:mod:`ipa.attribution.sites`).
    """
    ctx = ctx.enter(QUERY_STEPS)
    clock = _Clock(on_phase)
    if len(rows) == 0:
        sums = public(ctx.party, np.zeros(config.num_breakdowns), np.uint64)
        return QueryResult(noise(ctx.narrow("noise"), sums), {p: 0.0 for p in PHASES})
    # Each column is dropped (del) as soon as no later phase reads it, so the peak is the
    # live columns plus one phase's working set, not every column the query ever made.
    rows = neutralise(ctx.narrow("neutralise"), rows, config.query_type)
    key, is_trigger, breakdown_key, timestamp, value = _sorted_columns(ctx.narrow("sort"), rows, config)
    clock.lap("sort")
    user = key.shift_right(config.constraint_bits).resize(key.width)
    same_group, same_user = adjacent_equal(ctx.narrow("boundaries"), [key, user])
    del key, user
    found = last_touch(
        ctx.narrow("last_touch"),
        same_group,
        is_trigger,
        breakdown_key,
        timestamp,
        max_events_per_user=config.max_events_per_user,
        window=config.window,
    )
    del same_group, is_trigger, breakdown_key, timestamp
    clock.lap("attribute")
    # The value travels as boolean shares (so each helper can range-check it on
    # upload) and becomes arithmetic only here, where it is summed.
    amount = bool_to_arith(ctx.narrow("value_to_arith"), value, np.uint64)
    del value
    contribution = cap_contributions(ctx.narrow("cap"), found.attributed, amount, same_user, config.cap)
    source_key = found.breakdown_key
    del amount, same_user, found
    clock.lap("cap")
    sums = aggregate(ctx.narrow("aggregate"), contribution, source_key, config.num_breakdowns)
    del contribution, source_key
    clock.lap("aggregate")
    noised = noise(ctx.narrow("noise"), sums)
    clock.lap("noise")
    return QueryResult(noised, clock.seconds)
