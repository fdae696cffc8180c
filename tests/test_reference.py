"""Tests of ipa.reference: hand-worked examples of every rule, and a naive twin."""

from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipa.errors import InputError
from ipa.events import Events
from ipa.reference import attribute

U64_MAX = 2**64 - 1


class Row(NamedTuple):
    """One event, written the way the examples read best."""

    timestamp: int
    match_key: int
    is_trigger: int
    breakdown_key: int = 0
    trigger_value: int = 0
    constraint_id: int = 0


def src(t: int, breakdown_key: int, *, mk: int = 1, cid: int = 0) -> Row:
    return Row(t, mk, 0, breakdown_key, 0, cid)


def trg(t: int, value: int, *, mk: int = 1, cid: int = 0) -> Row:
    return Row(t, mk, 1, 0, value, cid)


def events_of(rows: list[Row]) -> Events:
    if not rows:
        return Events.empty()
    return Events(*(np.array(column, dtype=np.uint64) for column in zip(*rows, strict=True)))


def run(rows: list[Row], **query: int | None) -> list[int]:
    query = {"num_breakdowns": 3, "cap": 100, **query}
    sums = attribute(events_of(rows), **query)  # type: ignore[arg-type]
    assert sums.dtype == np.uint64
    assert len(sums) == query["num_breakdowns"]
    return sums.tolist()


# --- the naive twin: per row, plain Python, written from the rules alone ------------------


def naive_attribute(
    rows: list[Row], *, num_breakdowns: int, cap: int, window: int | None, max_events_per_user: int
) -> list[int]:
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[row.match_key, row.constraint_id].append(i)
    attributed_to: dict[int, int] = {}  # trigger index -> source index
    for members in groups.values():
        members.sort(key=lambda i: (rows[i].timestamp, rows[i].is_trigger, i))
        for place, i in enumerate(members):
            if not rows[i].is_trigger:
                continue
            earlier_sources = [p for p in range(place) if not rows[members[p]].is_trigger]
            if not earlier_sources:
                continue
            latest = earlier_sources[-1]
            source = members[latest]
            if place - latest > max_events_per_user - 1:
                continue
            if window is not None and rows[i].timestamp - rows[source].timestamp > window:
                continue
            attributed_to[i] = source
    sums = [0] * num_breakdowns
    per_user: dict[int, list[int]] = defaultdict(list)
    for i in attributed_to:
        per_user[rows[i].match_key].append(i)
    for triggers in per_user.values():
        triggers.sort(key=lambda i: (rows[i].constraint_id, rows[i].timestamp, i))
        remaining = cap
        for i in triggers:
            contribution = min(rows[i].trigger_value, remaining)
            remaining -= contribution
            key = rows[attributed_to[i]].breakdown_key
            if key < num_breakdowns:
                sums[key] += contribution
    return [s % 2**64 for s in sums]


_values = st.one_of(st.integers(0, 12), st.just(U64_MAX), st.integers(0, U64_MAX))
_rows = st.builds(
    Row,
    timestamp=st.one_of(st.integers(0, 6), st.just(U64_MAX)),
    match_key=st.sampled_from([0, 1, 2, U64_MAX]),
    is_trigger=st.integers(0, 1),
    breakdown_key=st.one_of(st.integers(0, 4), st.just(U64_MAX)),
    trigger_value=_values,
    constraint_id=st.integers(0, 2),
)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(_rows, max_size=40),
    num_breakdowns=st.integers(1, 4),
    cap=st.one_of(st.integers(0, 30), st.integers(0, U64_MAX)),
    window=st.one_of(st.none(), st.integers(0, 7), st.just(U64_MAX)),
    log_k=st.integers(0, 4),
)
def test_matches_naive_twin(
    rows: list[Row], num_breakdowns: int, cap: int, window: int | None, log_k: int
) -> None:
    query = {
        "num_breakdowns": num_breakdowns,
        "cap": cap,
        "window": window,
        "max_events_per_user": 2**log_k,
    }
    assert attribute(events_of(rows), **query).tolist() == naive_attribute(rows, **query)


@settings(max_examples=50, deadline=None)
@given(st.lists(_rows.filter(lambda r: r.trigger_value <= 12), max_size=60))
def test_a_users_total_is_at_most_the_cap(rows: list[Row]) -> None:
    cap = 7
    users = len({row.match_key for row in rows})
    assert sum(run(rows, cap=cap, num_breakdowns=5)) <= cap * users


# --- hand-worked examples, one rule each --------------------------------------------------


def test_empty_input_and_one_row() -> None:
    assert run([]) == [0, 0, 0]
    assert run([src(0, 1)]) == [0, 0, 0]
    assert run([trg(0, 5)]) == [0, 0, 0]


def test_a_trigger_takes_the_latest_earlier_source() -> None:
    assert run([src(0, 0), src(1, 1), trg(2, 5)]) == [0, 5, 0]
    assert run([src(1, 1), src(0, 0), trg(2, 5)]) == [0, 5, 0]  # time, not input order


def test_groups_are_separated_by_constraint_id() -> None:
    rows = [src(0, 1, cid=0), trg(1, 10, cid=1)]
    assert run(rows) == [0, 0, 0]
    assert run([*rows, src(0, 2, cid=1)]) == [0, 0, 10]


def test_groups_are_separated_by_match_key() -> None:
    assert run([src(0, 1, mk=1), trg(1, 10, mk=2)]) == [0, 0, 0]
    assert run([src(0, 1, mk=U64_MAX), trg(1, 10, mk=U64_MAX)]) == [0, 10, 0]


def test_sources_come_before_triggers_at_equal_timestamps() -> None:
    assert run([trg(5, 7), src(5, 1)]) == [0, 7, 0]  # the trigger is first in input order
    assert run([src(0, 0), trg(5, 7), src(5, 1)]) == [0, 7, 0]


def test_input_order_breaks_remaining_ties() -> None:
    assert run([src(3, 0), src(3, 1), trg(4, 5)]) == [0, 5, 0]
    assert run([src(3, 1), src(3, 0), trg(4, 5)]) == [5, 0, 0]


def test_trigger_with_no_earlier_source_is_unattributed() -> None:
    assert run([trg(0, 5), src(1, 1)]) == [0, 0, 0]
    assert run([trg(0, 5), src(1, 1), trg(2, 3)]) == [0, 3, 0]


def test_users_with_only_sources_or_only_triggers_get_nothing() -> None:
    assert run([src(0, 1), src(1, 2), src(2, 0)]) == [0, 0, 0]
    assert run([trg(0, 1, mk=2), trg(1, 2, mk=2)]) == [0, 0, 0]


def test_look_back_is_at_most_k_minus_one_rows_in_the_group() -> None:
    rows = [src(0, 0), trg(1, 1), trg(2, 10), trg(3, 100)]  # 1, 2 and 3 rows back
    assert run(rows, max_events_per_user=1, cap=1000) == [0, 0, 0]
    assert run(rows, max_events_per_user=2, cap=1000) == [1, 0, 0]
    assert run(rows, max_events_per_user=4, cap=1000) == [111, 0, 0]  # 3 = K - 1 rows back
    assert run([*rows, trg(4, 1000)], max_events_per_user=4, cap=2000) == [111, 0, 0]
    # Rows of another constraint id or match key do not count toward the distance.
    others = [trg(1, 1000, cid=1), trg(2, 1000, mk=9), src(0, 2, mk=9)]
    assert run(rows + others, max_events_per_user=2, cap=1000) == [1, 0, 1000]


def test_only_the_latest_source_counts_for_the_look_back() -> None:
    rows = [src(0, 1), src(1, 2), trg(2, 3), trg(3, 4), trg(4, 5)]
    # The latest source (key 2) is 1, 2, 3 rows back; with K = 2 only the first trigger
    # counts, and the older source (key 1) never stands in.
    assert run(rows, max_events_per_user=2) == [0, 0, 3]


def test_window_edge_is_inclusive() -> None:
    rows = [src(100, 1), trg(110, 5)]
    assert run(rows, window=10) == [0, 5, 0]
    assert run(rows, window=9) == [0, 0, 0]
    assert run(rows) == [0, 5, 0]  # no window
    assert run([src(7, 1), trg(7, 5)], window=0) == [0, 5, 0]
    assert run([src(0, 1), trg(U64_MAX, 5)], window=U64_MAX) == [0, 5, 0]


def test_window_applies_to_the_latest_source_only() -> None:
    assert run([src(0, 1), src(5, 2), trg(20, 5)], window=10) == [0, 0, 0]
    assert run([src(0, 1), src(15, 2), trg(20, 5)], window=10) == [0, 0, 5]


def test_cap_keeps_the_earliest_conversions() -> None:
    rows = [src(0, 0), trg(1, 8), src(2, 1), trg(3, 8)]
    assert run(rows, cap=10) == [8, 2, 0]
    assert run([src(0, 1), trg(1, 100)], cap=10) == [0, 10, 0]
    assert run(rows, cap=0) == [0, 0, 0]


def test_cap_runs_over_constraint_ids_in_constraint_id_then_time_order() -> None:
    rows = [src(0, 0, cid=1), trg(1, 6, cid=1), src(5, 1, cid=0), trg(6, 6, cid=0)]
    # Time order would fill key 0 first; (constraint_id, timestamp) order fills key 1 first.
    assert run(rows, cap=10) == [4, 6, 0]


def test_cap_is_per_match_key() -> None:
    rows = [src(0, 0, mk=1), trg(1, 8, mk=1), src(0, 0, mk=2), trg(1, 8, mk=2)]
    assert run(rows, cap=10) == [16, 0, 0]


def test_cap_counts_unattributed_triggers_not_at_all() -> None:
    assert run([trg(0, 9), src(1, 0), trg(2, 5)], cap=10) == [5, 0, 0]


def test_breakdown_keys_past_the_range_are_dropped_but_still_use_the_cap() -> None:
    assert run([src(0, 5), trg(1, 8)], num_breakdowns=3) == [0, 0, 0]
    assert run([src(0, 0), src(1, 5), trg(2, 8)]) == [0, 0, 0]  # blocks the older source
    rows = [src(0, 5), trg(1, 8), src(2, 0), trg(3, 8)]
    assert run(rows, cap=10) == [2, 0, 0]
    assert run(rows, cap=10, num_breakdowns=6) == [2, 0, 0, 0, 0, 8]


def test_ignored_fields_play_no_part() -> None:
    rows = [Row(0, 1, 0, 1, 999, 0), Row(1, 1, 1, 2, 5, 0)]  # source value, trigger key
    assert run(rows) == [0, 5, 0]


def test_cap_is_exact_for_64_bit_values() -> None:
    rows = [src(0, 0), trg(1, 2**63), trg(2, 2**63), trg(3, 2**63)]
    assert run(rows, cap=U64_MAX) == [U64_MAX, 0, 0]
    assert run(rows, cap=2**63 + 1) == [2**63 + 1, 0, 0]


def test_sums_wrap_modulo_two_to_the_64() -> None:
    rows = [r for mk in (1, 2) for r in (src(0, 0, mk=mk), trg(1, U64_MAX, mk=mk))]
    assert run(rows, cap=U64_MAX) == [U64_MAX - 1, 0, 0]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"num_breakdowns": 0}, "num_breakdowns must be at least 1, got 0"),
        ({"cap": -1}, r"cap must be in \[0, 18446744073709551615\], got -1"),
        ({"cap": 2**64}, "cap must be in"),
        ({"cap": True}, "cap must be an integer, got True"),
        ({"cap": 1.5}, "cap must be an integer, got 1.5"),
        ({"window": -1}, "window must be at least 0, got -1"),
        ({"max_events_per_user": 6}, "max_events_per_user must be a power of two, got 6"),
        ({"max_events_per_user": 0}, "max_events_per_user must be at least 1, got 0"),
    ],
)
def test_arguments_are_checked(query: dict[str, object], message: str) -> None:
    query = {"num_breakdowns": 2, "cap": 10, **query}
    with pytest.raises(InputError, match=message):
        attribute(Events.empty(), **query)  # type: ignore[arg-type]


def test_a_large_input_agrees_with_the_naive_twin_on_a_sample() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    rows = [
        Row(*map(int, r))
        for r in zip(
            rng.integers(0, 50, n), rng.integers(0, 40, n), rng.integers(0, 2, n),
            rng.integers(0, 6, n), rng.integers(0, 20, n), rng.integers(0, 3, n),
            strict=True,
        )
    ]  # fmt: skip
    query = {"num_breakdowns": 5, "cap": 60, "window": 20, "max_events_per_user": 16}
    assert attribute(events_of(rows), **query).tolist() == naive_attribute(rows, **query)
