"""The whole MPC query (``run_query`` in three parties, noise off) against ``ipa.reference.attribute``."""

import dataclasses
import threading

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from three_party import events, mpc_query

from ipa.attribution.config import QueryConfig
from ipa.attribution.pipeline import PHASES, no_noise, run_query
from ipa.attribution.rows import share_events
from ipa.errors import InputError, MaliciousBehaviourError
from ipa.events import Events
from ipa.mpc.memory import Tamper, run_three
from ipa.mpc.sharing import reconstruct
from ipa.reference import attribute, attribute_query
from ipa.synthetic import generate

SMALL = {"match_key_bits": 8, "timestamp_bits": 8, "breakdown_bits": 3, "value_bits": 8, "constraint_bits": 2}
DEFAULT: dict[str, int] = {}  # QueryConfig's defaults: 40, 32, 8, 16, 8
WIDEST = {  # a 64-bit sort key (match key ‖ constraint id) and a 64-bit info word (1 + 8 + 55)
    "match_key_bits": 56,
    "constraint_bits": 8,
    "timestamp_bits": 55,
    "breakdown_bits": 8,
    "value_bits": 32,
}
NARROWEST = {
    "match_key_bits": 1,
    "timestamp_bits": 1,
    "breakdown_bits": 1,
    "value_bits": 1,
    "constraint_bits": 1,
}


@st.composite
def widths(draw) -> dict[str, int]:
    preset = draw(st.sampled_from(["small", "default", "widest", "narrowest", "random"]))
    if preset != "random":
        return {"small": SMALL, "default": DEFAULT, "widest": WIDEST, "narrowest": NARROWEST}[preset]
    match_key_bits = draw(st.integers(1, 56))
    breakdown_bits = draw(st.integers(1, 8))
    return {
        "match_key_bits": match_key_bits,
        "constraint_bits": draw(st.integers(1, min(8, 64 - match_key_bits))),
        "breakdown_bits": breakdown_bits,
        "timestamp_bits": draw(st.integers(1, 63 - breakdown_bits)),
        "value_bits": draw(st.integers(1, 32)),
    }


def _top(bits: int) -> int:
    return (1 << bits) - 1


def _edges(top: int, *points: int) -> list[int]:
    return sorted({p for p in points if 0 <= p <= top})


@st.composite
def queries(draw, max_rows: int = 40) -> tuple[Events, QueryConfig]:
    """A query config and an event set with few users, many ties and values near every edge."""
    w = draw(widths())
    bits = QueryConfig(num_breakdowns=1, cap=0, **w).field_bits()
    tb = bits["timestamp"]
    t_top, v_top, b_top = _top(tb), _top(bits["trigger_value"]), _top(bits["breakdown_key"])

    window = draw(
        st.one_of(
            st.none(),
            st.just(0),
            st.integers(0, min(3, t_top)),
            st.sampled_from([t_top, max(t_top - 1, 0)]),
            st.integers(0, t_top),
        )
    )
    # _within_window overflows for window 0 at timestamp_bits 62: see test_window_zero_at_62_timestamp_bits.
    num_breakdowns = draw(st.one_of(st.sampled_from([1, b_top + 1]), st.integers(1, b_top + 1)))
    cap = draw(
        st.one_of(
            st.sampled_from([0, 1, v_top, v_top + 1, 2 * v_top, (1 << 62) - 1]),
            st.integers(0, 3 * v_top),
            st.integers(0, (1 << 62) - 1),
        )
    )
    config = QueryConfig(
        num_breakdowns=num_breakdowns,
        cap=cap,
        window=window,
        max_events_per_user=draw(st.sampled_from([4, 2, 8, 1, 64])),
        **w,
    )

    # Few users, constraint ids and timestamps: long groups, ties, differences of W and W+1.
    mk_top, cid_top = _top(bits["match_key"]), _top(bits["constraint_id"])
    match_keys = draw(
        st.lists(st.one_of(st.sampled_from([0, mk_top]), st.integers(0, mk_top)), min_size=1, max_size=3)
    )
    constraint_ids = draw(
        st.lists(st.one_of(st.sampled_from([0, cid_top]), st.integers(0, cid_top)), min_size=1, max_size=2)
    )
    # Few timestamps, so there are many ties: sources at one or two base times (and a few other
    # points: 0, the largest timestamp, anything), triggers at a base time plus 0, W or W + 1
    # (and the same other points), so the window's edge decides often.
    W = window if window is not None else draw(st.integers(0, min(5, t_top)))
    base = st.one_of(st.integers(0, max(t_top - W - 1, 0)), st.just(0), st.integers(0, t_top))
    bases = draw(st.lists(base, min_size=1, max_size=2))
    edges = _edges(t_top, 0, 1, W, W + 1, t_top, t_top - 1, t_top - W, t_top - W - 1)
    extra = draw(st.lists(st.one_of(st.sampled_from(edges), st.integers(0, t_top)), max_size=2))
    source_times = bases + extra
    trigger_times = _edges(t_top, *(b + d for b in bases for d in (0, W, W + 1))) + extra
    key = st.one_of(
        st.integers(0, num_breakdowns - 1),
        st.integers(min(num_breakdowns, b_top), b_top),  # keys >= B, when there are any
        st.sampled_from([0, b_top]),
    )
    value = st.one_of(st.integers(1, v_top), st.sampled_from([0, 1, v_top]))
    user, constraint = st.sampled_from(match_keys), st.sampled_from(constraint_ids)
    source = st.tuples(st.sampled_from(source_times), user, st.just(0), key, value, constraint)
    trigger = st.tuples(st.sampled_from(trigger_times), user, st.just(1), key, value, constraint)
    n = draw(st.one_of(st.integers(max_rows // 2, max_rows), st.integers(0, max_rows)))
    rows = draw(st.lists(st.one_of(source, trigger), min_size=n, max_size=n))
    return events(rows), config


@settings(max_examples=60, deadline=None)
@given(queries())
def test_mpc_query_equals_the_reference(query):
    ev, config = query
    got, _ = mpc_query(ev, config)
    expected = attribute_query(ev, config)
    assert got.dtype == np.uint64
    assert got.tolist() == expected.tolist()
    for label in coverage(ev, config, expected):
        event(label)


def coverage(ev, config, expected):
    """Which rules decided this example (shown by ``pytest --hypothesis-show-statistics``)."""
    params = {
        "num_breakdowns": config.num_breakdowns,
        "cap": config.cap,
        "window": config.window,
        "max_events_per_user": config.max_events_per_user,
    }

    def differs(**change):
        return attribute(ev, **{**params, **change}).tolist() != expected.tolist()

    labels = [f"{'few' if len(ev) < 20 else 'many'} rows", f"sums {'non' if expected.any() else ''}zero"]
    if differs(cap=(1 << 62) - 1):
        labels.append("cap binds")
    if differs(max_events_per_user=1 << 20):
        labels.append("K binds")
    if (w := config.window) is not None:
        if differs(window=None):
            labels.append("window binds")
        if differs(window=w + 1) or (w > 0 and differs(window=w - 1)):
            labels.append("window edge decides")  # a difference of exactly W or W + 1 matters
    everything = attribute(ev, **{**params, "num_breakdowns": 1 << config.breakdown_bits})
    if everything.sum() != expected.sum():
        labels.append("keys >= B dropped")
    return labels


# --- explicit cases --------------------------------------------------------------------------


def check(rows, config, expected):
    ev = events(rows)
    assert attribute_query(ev, config).tolist() == expected  # the hand computation matches the contract
    got, results = mpc_query(ev, config)
    assert got.tolist() == expected
    return results


def test_empty_input():
    config = QueryConfig(num_breakdowns=5, cap=10, window=3, max_events_per_user=4)
    got, results = mpc_query(Events.empty(), config)
    assert got.dtype == np.uint64
    assert got.tolist() == [0] * 5
    for r in results:
        assert r.seconds == {p: 0.0 for p in PHASES}


FIELDS = ("match_key", "constraint_id", "timestamp", "is_trigger", "breakdown_key", "trigger_value")


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize(("party", "side"), [(0, "left"), (1, "right"), (2, "left")])
def test_inconsistent_shares_of_one_row_fail_the_query_at_checkpoint_0(field, party, side):
    """A collector that gives one holder of a component another copy (one bit of one row) is caught."""
    config = QueryConfig(num_breakdowns=4, cap=10)
    shares = share_events(generate(40, seed=3, num_breakdowns=4), config)
    column = getattr(shares[party], field)
    copy = getattr(column, side).copy()
    copy[-1] ^= copy.dtype.type(1)
    shares[party] = dataclasses.replace(shares[party], **{field: dataclasses.replace(column, **{side: copy})})
    with pytest.raises(MaliciousBehaviourError, match="input consistency"):
        run_three(lambda ctx, rows: run_query(ctx, rows, config), shares)


@pytest.mark.parametrize("step", ["root/inputs/to_next", "root/inputs/to_prev"])
@pytest.mark.parametrize("party", [0, 1, 2])
def test_a_helper_altering_its_input_digest_is_caught(step, party):
    config = QueryConfig(num_breakdowns=4, cap=10)
    shares = share_events(generate(8, seed=4, num_breakdowns=4), config)
    with pytest.raises(MaliciousBehaviourError, match="input consistency"):
        run_three(lambda ctx, rows: run_query(ctx, rows, config), shares, tamper=Tamper(party, step, "flip"))


@pytest.mark.parametrize(
    "row",
    [
        (7, 3, 0, 1, 0, 0),  # one source
        (7, 3, 1, 0, 9, 0),  # one trigger
        (2**32 - 1, 2**40 - 1, 0, 255, 2**16 - 1, 255),  # one source, every field at its maximum
        (2**32 - 1, 2**40 - 1, 1, 255, 2**16 - 1, 255),  # one trigger, every field at its maximum
    ],
)
@pytest.mark.parametrize("window", [None, 0])
def test_one_row(row, window):
    check([row], QueryConfig(num_breakdowns=256, cap=100, window=window), [0] * 256)


def test_users_with_only_sources_or_only_triggers():
    rows = [
        # user 1: sources only
        (1, 1, 0, 1, 0, 0),
        (2, 1, 0, 2, 0, 0),
        # user 2: triggers only
        (1, 2, 1, 0, 5, 0),
        (2, 2, 1, 1, 6, 0),
        # user 3: a source and a trigger in different constraint ids: never attributed
        (1, 3, 0, 1, 0, 0),
        (2, 3, 1, 0, 7, 1),
        # user 4: a trigger before its only source (in time, though after it in the input)
        (9, 4, 0, 2, 0, 0),
        (8, 4, 1, 0, 8, 0),
        # user 5: an ordinary attribution, so the sums are not all zero
        (1, 5, 0, 3, 0, 2),
        (4, 5, 1, 0, 11, 2),
    ]
    check(rows, QueryConfig(num_breakdowns=4, cap=100, **SMALL), [0, 0, 0, 11])


WINDOW_ROWS = [
    # user 1: difference 10
    (100, 1, 0, 1, 0, 0),
    (110, 1, 1, 0, 5, 0),
    # user 2: difference 11
    (100, 2, 0, 2, 0, 0),
    (111, 2, 1, 0, 7, 0),
    # user 3: the latest source has key 5 >= B; the older key-1 source never stands in
    (0, 3, 0, 1, 0, 0),
    (1, 3, 0, 5, 0, 0),
    (2, 3, 1, 0, 4, 0),
    # user 255 (largest match key), constraint 3 (largest): difference 10 ending at the largest timestamp
    (245, 255, 0, 3, 0, 3),
    (255, 255, 1, 0, 11, 3),
    # user 5: difference 11 ending at the largest timestamp
    (244, 5, 0, 0, 0, 0),
    (255, 5, 1, 0, 13, 0),
]


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (None, [13, 5, 7, 11]),
        (255, [13, 5, 7, 11]),
        (11, [13, 5, 7, 11]),
        (10, [0, 5, 0, 11]),  # difference == W is attributed, W + 1 is not
        (9, [0, 0, 0, 0]),
        (0, [0, 0, 0, 0]),
    ],
)
def test_window_edge(window, expected):
    check(WINDOW_ROWS, QueryConfig(num_breakdowns=4, cap=1000, window=window, **SMALL), expected)


def test_window_zero_attributes_ties_in_time():
    rows = [
        # user 1: the trigger comes first in the input, but at equal times sources sort first
        (5, 1, 1, 0, 2, 0),
        (5, 1, 0, 1, 0, 0),
        # user 2: two sources at the same time: the later one in the input is the latest
        (7, 2, 0, 1, 0, 0),
        (7, 2, 0, 2, 0, 0),
        (7, 2, 1, 0, 3, 0),
        # user 3: one time step is outside window 0
        (7, 3, 0, 3, 0, 0),
        (8, 3, 1, 0, 4, 0),
    ]
    check(rows, QueryConfig(num_breakdowns=4, cap=100, window=0, **SMALL), [0, 2, 3, 0])


K_ROWS = [
    # user 1: a source, then triggers 1 and 2 rows after it
    (0, 1, 0, 1, 0, 0),
    (1, 1, 1, 0, 3, 0),
    (2, 1, 1, 0, 4, 0),
    # user 2: a trigger long after its source in time, but 1 row after it
    (0, 2, 0, 0, 0, 0),
    (200, 2, 1, 0, 6, 0),
    # user 3: rows of another constraint id in between in time do not count against K
    (0, 3, 0, 2, 0, 0),
    (1, 3, 0, 3, 0, 1),
    (1, 3, 1, 0, 1, 1),
    (2, 3, 1, 0, 8, 0),
]


@pytest.mark.parametrize(
    ("k", "expected"),
    [(1, [0, 0, 0, 0]), (2, [6, 3, 8, 1]), (4, [6, 7, 8, 1]), (64, [6, 7, 8, 1])],
)
def test_max_events_per_user(k, expected):
    check(K_ROWS, QueryConfig(num_breakdowns=4, cap=100, max_events_per_user=k, **SMALL), expected)


def test_k_counts_triggers_and_sources_alike():
    # 3 sources, then 4 triggers 1, 2, 3 and 4 rows after the latest source: earlier sources
    # never count, and K - 1 rows back is the limit.
    rows = [(0, 1, 0, 1, 0, 0), (1, 1, 0, 2, 0, 0), (2, 1, 0, 3, 0, 0), (3, 1, 1, 0, 1, 0)]
    rows += [(4, 1, 1, 0, 10, 0), (5, 1, 1, 0, 20, 0), (6, 1, 1, 0, 40, 0)]
    for k, expected in [(1, [0, 0, 0, 0]), (2, [0, 0, 0, 1]), (4, [0, 0, 0, 31]), (8, [0, 0, 0, 71])]:
        check(rows, QueryConfig(num_breakdowns=4, cap=1000, max_events_per_user=k, **SMALL), expected)


@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        (0, [0, 0, 0, 0]),
        (5, [0, 0, 5, 0]),
        (10, [0, 4, 6, 0]),
        (12, [0, 6, 6, 0]),
        (1000, [0, 6, 6, 0]),
    ],
)
def test_cap_keeps_the_earliest_by_constraint_then_time(cap, expected):
    rows = [
        # constraint 1 comes first in time, constraint 0 first in the cap order
        (0, 1, 0, 1, 0, 1),
        (1, 1, 1, 0, 6, 1),
        (5, 1, 0, 2, 0, 0),
        (6, 1, 1, 0, 6, 0),
    ]
    check(rows, QueryConfig(num_breakdowns=4, cap=cap, **SMALL), expected)


def test_dropped_keys_still_use_up_the_cap():
    rows = [
        (0, 1, 0, 6, 0, 0),  # key 6 >= B = 4
        (1, 1, 1, 0, 7, 0),
        (2, 1, 0, 2, 0, 0),
        (3, 1, 1, 0, 7, 0),
    ]
    check(rows, QueryConfig(num_breakdowns=4, cap=10, **SMALL), [0, 0, 3, 0])


def test_large_cap_and_full_width_values():
    top = 2**32 - 1
    rows = [(0, u, 0, u % 2, 0, 0) for u in range(8)] + [(1, u, 1, 0, top, 0) for u in range(8)]
    rows += [(2, u, 1, 0, top, 0) for u in range(8)]
    config = QueryConfig(num_breakdowns=2, cap=(1 << 62) - 1, value_bits=32)
    check(rows, config, [8 * top, 8 * top])
    config = QueryConfig(num_breakdowns=2, cap=top + 1, value_bits=32)
    check(rows, config, [4 * (top + 1), 4 * (top + 1)])


def test_window_zero_at_62_timestamp_bits():
    # 62 is the largest timestamp width QueryConfig allows (1 + breakdown_bits + 62 <= 64).
    config = QueryConfig(num_breakdowns=2, cap=100, window=0, timestamp_bits=62, breakdown_bits=1)
    check([(5, 1, 0, 1, 0, 0), (5, 1, 1, 0, 7, 0)], config, [0, 7])


@pytest.mark.parametrize("window", [None, 1, 4, 5, 2**62 - 1])
def test_62_timestamp_bits_with_other_windows(window):
    top = 2**62 - 1
    config = QueryConfig(num_breakdowns=2, cap=100, window=window, timestamp_bits=62, breakdown_bits=1)
    expected = [0, 0] if window in (1, 4) else [0, 7]
    check([(top - 5, 1, 0, 1, 0, 0), (top, 1, 1, 0, 7, 0)], config, expected)


# --- input checks, timings, noise --------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "row"),
    [
        ("timestamp", (256, 1, 0, 1, 0, 0)),
        ("match_key", (1, 256, 0, 1, 0, 0)),
        ("breakdown_key", (1, 1, 0, 8, 0, 0)),
        ("trigger_value", (1, 1, 1, 0, 256, 0)),
        ("constraint_id", (1, 1, 0, 1, 0, 4)),
    ],
)
def test_field_too_wide_is_an_input_error_naming_it(field, row):
    config = QueryConfig(num_breakdowns=4, cap=10, **SMALL)
    ok = (255, 255, 1, 7, 255, 3)  # every field at its largest allowed value
    share_events(events([ok, ok]), config)
    with pytest.raises(InputError, match=rf"event 1: field {field} does not fit in \d+ bits"):
        share_events(events([ok, row]), config)


def test_seconds_has_every_phase():
    rows = [(0, 1, 0, 1, 0, 0), (1, 1, 1, 0, 3, 0), (2, 2, 1, 0, 3, 0)]
    results = check(rows, QueryConfig(num_breakdowns=2, cap=10, window=5, **SMALL), [0, 3])
    for r in results:
        assert tuple(r.seconds) == PHASES
        assert all(isinstance(s, float) and s >= 0 for s in r.seconds.values())


class RecordingNoise:
    """A noise hook adding a known public vector; records what each party handed it."""

    def __init__(self, vector):
        self.vector = np.array(vector, dtype=np.uint64)
        self.seen = {}
        self.steps = {}
        self.lock = threading.Lock()

    def __call__(self, ctx, sums):
        with self.lock:
            assert ctx.party not in self.seen  # called once per party
            self.seen[ctx.party] = sums
            self.steps[ctx.party] = ctx.step
        return sums.add_public(ctx.party, self.vector)

    def exact(self):
        return reconstruct([self.seen[i] for i in range(3)])


@pytest.mark.parametrize("empty", [False, True])
def test_noise_hook_output_is_what_is_released(empty):
    ev = Events.empty() if empty else events(WINDOW_ROWS)
    config = QueryConfig(num_breakdowns=4, cap=1000, window=10, **SMALL)
    exact = attribute_query(ev, config)
    hook = RecordingNoise([1, 2**64 - 1, 1000, 0])  # 2**64 - 1 is -1 in the ring
    got, _ = mpc_query(ev, config, hook)
    assert hook.exact().tolist() == exact.tolist()  # the hook sees the exact sums
    assert got.tolist() == (exact + hook.vector).tolist()  # and its output is released, mod 2**64
    assert all("noise" in step for step in hook.steps.values())
    assert mpc_query(ev, config, no_noise)[0].tolist() == exact.tolist()
