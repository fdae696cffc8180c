"""Each phase of the attribution query in MPC against a plaintext computation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipa.attribution.aggregate import aggregate
from ipa.attribution.boundaries import adjacent_equal
from ipa.attribution.cap import cap_contributions, running_sum
from ipa.attribution.last_touch import _scan, _within_window, last_touch
from ipa.mpc.sharing import reconstruct, share_arithmetic, share_boolean
from ipa.mpc.testing import opened, run

STEP = settings(max_examples=40, deadline=None)


def top(bits: int) -> int:
    return (1 << bits) - 1


def words(bits: int, n: int, pool_size: int = 4) -> st.SearchStrategy[list[int]]:
    """n values of ``bits`` bits, mostly from a small pool (repeats), with edge values."""
    edges = [0, 1, top(bits), max(top(bits) - 1, 0), 1 << (bits - 1)]  # some differ in one bit only
    value = st.one_of(st.sampled_from(edges), st.integers(0, top(bits)))
    return st.lists(value, min_size=1, max_size=pool_size).flatmap(
        lambda pool: st.lists(st.one_of(st.sampled_from(pool), value), min_size=n, max_size=n)
    )


def groups(n: int) -> st.SearchStrategy[list[int]]:
    """Sorted group ids of n rows: runs of equal ids of random lengths."""
    return st.lists(st.integers(0, 6), min_size=n, max_size=n).map(sorted)


def same_as_previous(ids: list[int]) -> np.ndarray:
    return np.array([int(i > 0 and ids[i] == ids[i - 1]) for i in range(len(ids))], dtype=np.uint8)


def u64(values) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


# --- boundaries ---------------------------------------------------------------------------------


@STEP
@given(st.integers(1, 64), st.integers(1, 3), st.integers(0, 30), st.data())
def test_adjacent_equal(width, num_columns, n, data):
    columns = [u64(data.draw(words(width, n))) for _ in range(num_columns)]
    result = run(lambda ctx, *cs: adjacent_equal(ctx, list(cs)), *(share_boolean(c, width) for c in columns))
    flags = opened(result)
    assert len(flags) == num_columns
    for column, got in zip(columns, flags, strict=True):
        assert result.outputs[0][0].width == 1
        assert got.tolist() == same_as_previous(column.tolist()).tolist()
        if n:
            assert got[0] == 0


def test_adjacent_equal_single_row_and_maximum_words():
    biggest = u64([2**64 - 1, 2**64 - 1, 2**64 - 2, 0, 0])
    (got,) = opened(run(lambda ctx, c: adjacent_equal(ctx, [c]), share_boolean(biggest, 64)))
    assert got.tolist() == [0, 1, 0, 0, 1]
    (one,) = opened(run(lambda ctx, c: adjacent_equal(ctx, [c]), share_boolean(biggest[:1], 64)))
    assert one.tolist() == [0]


# --- last touch ---------------------------------------------------------------------------------


def latest_source(valid: list[int], group: list[int], k: int) -> list[int | None]:
    """For each row, the latest row j with valid[j] in rows i-k+1 .. i of row i's group."""
    out: list[int | None] = []
    for i in range(len(valid)):
        found = None
        for j in range(i, max(i - k + 1, 0) - 1, -1):
            if group[j] != group[i]:
                break
            if valid[j]:
                found = j
                break
        out.append(found)
    return out


@STEP
@given(st.integers(1, 63), st.sampled_from([1, 2, 4, 8, 16]), st.integers(1, 30), st.data())
def test_scan_finds_the_latest_valid_row_within_k_rows_of_the_group(payload_bits, k, n, data):
    group = data.draw(groups(n))
    valid = data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    payload = data.draw(words(payload_bits, n, pool_size=8))
    word = u64([(v << payload_bits) | p for v, p in zip(valid, payload, strict=True)])
    width = payload_bits + 1
    result = run(
        lambda ctx, w, s: _scan(ctx, w, s, k),
        share_boolean(word, width),
        share_boolean(same_as_previous(group), 1),
    )
    got = opened(result)
    assert result.outputs[0].width == width
    for i, j in enumerate(latest_source(valid, group, k)):
        if j is None:
            assert got[i] >> payload_bits == 0, i  # not found: the valid bit is clear
        else:
            assert int(got[i]) == int(word[j]), i  # found: exactly the source's word


@STEP
@given(st.integers(1, 62), st.data())
def test_within_window(bits, data):
    edge = st.sampled_from([0, 1, top(bits) - 1, top(bits)]).map(lambda t: max(t, 0))
    n = data.draw(st.integers(1, 20))
    window = data.draw(st.one_of(edge, st.integers(0, min(8, top(bits))), st.integers(0, top(bits))))
    stamp = st.one_of(edge, st.integers(0, top(bits)), st.just(min(window, top(bits))))
    pairs = data.draw(st.lists(st.tuples(stamp, stamp), min_size=n, max_size=n))
    # Make differences of exactly window - 1, window and window + 1 likely.
    near = data.draw(st.lists(st.sampled_from([-1, 0, 1, None]), min_size=n, max_size=n))
    trigger, source = [], []
    for (a, b), d in zip(pairs, near, strict=True):
        lo, hi = min(a, b), max(a, b)
        if d is not None and 0 <= lo + window + d <= top(bits):
            hi = lo + window + d
        trigger.append(hi)
        source.append(lo)
    got = within_window(bits, trigger, source, window)
    assert got.tolist() == [int(t - s <= window) for t, s in zip(trigger, source, strict=True)]


def within_window(bits, trigger, source, window):
    result = run(
        lambda ctx, t, s: _within_window(ctx, t, s, window),
        share_boolean(u64(trigger), bits),
        share_boolean(u64(source), bits),
    )
    assert result.outputs[0].width == 1
    return opened(result)


@pytest.mark.parametrize("bits", [1, 2, 8, 32, 61, 62])
def test_within_window_edges(bits):
    t = top(bits)
    trigger = [0, t, t, t, t, 1, t, t]
    source = [0, 0, 0, t, t - 1, 0, 1, 0]
    for window in sorted({1, t - 1, t} - {0}):
        expected = [int(a - b <= window) for a, b in zip(trigger, source, strict=True)]
        assert within_window(bits, trigger, source, window).tolist() == expected, window


@pytest.mark.parametrize(
    "bits",
    [
        1,
        8,
        61,
        62,
    ],
)
def test_within_window_zero(bits):
    trigger, source = [0, 1, top(bits), top(bits)], [0, 0, top(bits), 0]
    assert within_window(bits, trigger, source, 0).tolist() == [1, 0, 1, 0]


@STEP
@given(
    st.integers(1, 8),
    st.integers(1, 24),
    st.sampled_from([1, 2, 4, 8]),
    st.one_of(st.none(), st.integers(0, 6)),
    st.integers(1, 30),
    st.data(),
)
def test_last_touch(breakdown_bits, timestamp_bits, k, window, n, data):
    window = None if window is None else min(window, top(timestamp_bits))
    group = data.draw(groups(n))
    is_trigger = data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    key = data.draw(words(breakdown_bits, n))
    steps = data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    stamps, t = [], 0  # non-decreasing within a group, as after the sort
    for i in range(n):
        t = 0 if i == 0 or group[i] != group[i - 1] else min(t + steps[i], top(timestamp_bits))
        stamps.append(t)
    result = run(
        lambda ctx, g, trig, b, ts: last_touch(ctx, g, trig, b, ts, max_events_per_user=k, window=window),
        share_boolean(same_as_previous(group), 1),
        share_boolean(u64(is_trigger), 1),
        share_boolean(u64(key), breakdown_bits),
        share_boolean(u64(stamps), timestamp_bits),
    )
    attributed = reconstruct([o.attributed for o in result.outputs])
    source_key = reconstruct([o.breakdown_key for o in result.outputs])
    sources = latest_source([1 - x for x in is_trigger], group, k)
    for i, j in enumerate(sources):
        expected = bool(is_trigger[i]) and j is not None
        if expected and window is not None:
            expected = stamps[i] - stamps[j] <= window
        assert bool(attributed[i]) == expected, i
        if expected:
            assert int(source_key[i]) == key[j], i


# --- cap ----------------------------------------------------------------------------------------


def segmented_sums(values: list[int], same_user: list[int]) -> list[int]:
    out, total = [], 0
    for v, same in zip(values, same_user, strict=True):
        total = total + v if same else v
        out.append(total)
    return out


@STEP
@given(st.integers(1, 40), st.data())
def test_running_sum(n, data):
    values = data.draw(st.lists(st.integers(0, 2**32 - 1), min_size=n, max_size=n))
    same_user = same_as_previous(data.draw(groups(n)))
    got = opened(
        run(running_sum, share_arithmetic(u64(values)), share_arithmetic(same_user.astype(np.uint64)))
    )
    assert got.tolist() == segmented_sums(values, same_user.tolist())


@STEP
@given(st.integers(1, 32), st.integers(1, 30), st.data())
def test_cap_contributions(value_bits, n, data):
    values = data.draw(words(value_bits, n, pool_size=6))
    attributed = data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    same_user = same_as_previous(data.draw(groups(n)))
    v = [x * a for x, a in zip(values, attributed, strict=True)]
    cum = segmented_sums(v, same_user.tolist())
    cap = data.draw(
        st.one_of(
            st.sampled_from([0, 1, top(value_bits), (1 << 62) - 1]),
            st.sampled_from(cum),  # the cap reached exactly
            st.integers(0, max(cum) + 1),
            st.integers(0, (1 << 62) - 1),
        )
    )
    got = opened(
        run(
            lambda ctx, a, x, s: cap_contributions(ctx, a, x, s, cap),
            share_boolean(u64(attributed), 1),
            share_arithmetic(u64(values)),
            share_boolean(same_user, 1),
        )
    )
    expected = [min(c, cap) - min(c - x, cap) for c, x in zip(cum, v, strict=True)]
    assert got.tolist() == expected
    totals = {}
    for u, e in zip(np.cumsum(1 - same_user).tolist(), expected, strict=True):
        totals[u] = totals.get(u, 0) + e
    assert all(total <= cap for total in totals.values())


# --- aggregate ----------------------------------------------------------------------------------


@STEP
@given(st.integers(1, 8), st.integers(1, 40), st.data())
def test_aggregate(bits, n, data):
    num_breakdowns = data.draw(st.one_of(st.sampled_from([1, 1 << bits]), st.integers(1, 1 << bits)))
    keys = data.draw(words(bits, n, pool_size=6))
    contribution = u64(data.draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n)))
    result = run(
        lambda ctx, c, k: aggregate(ctx, c, k, num_breakdowns),
        share_arithmetic(contribution),
        share_boolean(u64(keys), bits),
    )
    expected = np.zeros(num_breakdowns, dtype=np.uint64)
    kept = u64(keys) < num_breakdowns  # keys >= B are dropped
    np.add.at(expected, u64(keys)[kept].astype(np.intp), contribution[kept])  # wraps mod 2**64
    got = opened(result)
    assert got.shape == (num_breakdowns,)
    assert got.tolist() == expected.tolist()


@STEP
@given(st.integers(1, 8), st.integers(1, 40), st.data())
def test_aggregate_in_row_blocks(bits, n, data):
    """Blocks of 5 rows, so that the indicators are formed and consumed across block boundaries."""
    from ipa.attribution import aggregate as module

    keys = u64(data.draw(words(bits, n, pool_size=6)))
    contribution = u64(data.draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "_BLOCK", 5)
        result = run(
            lambda ctx, c, k: aggregate(ctx, c, k, 1 << bits),
            share_arithmetic(contribution),
            share_boolean(keys, bits),
        )
    expected = np.zeros(1 << bits, dtype=np.uint64)
    np.add.at(expected, keys.astype(np.intp), contribution)
    assert opened(result).tolist() == expected.tolist()


def test_aggregate_in_malicious_mode_records_its_products():
    """There the products are recorded (one block: as multiply and matmul would); the checkpoint passes."""
    from ipa.attribution.aggregate import AGGREGATE_STEPS
    from ipa.mpc.checkpoint import CHECKPOINT_STEPS, checkpoint
    from ipa.mpc.step import Steps

    steps = Steps("verified_aggregate", aggregate=AGGREGATE_STEPS, check=CHECKPOINT_STEPS)
    keys = u64([3, 0, 255, 3, 17, 200, 3])
    contribution = u64([5, 7, 11, 13, 2**64 - 1, 1, 2])

    def protocol(ctx, c, k):
        ctx = ctx.enter(steps)
        sums = aggregate(ctx.narrow("aggregate"), c, k, 256)
        assert ctx.verifier is not None
        shapes = {(p.op, p.z.shape) for p in ctx.verifier.products}
        assert ("multiply", (16, len(c))) in shapes and ("matmul", (16, 16)) in shapes  # weight, sums
        checkpoint(ctx.narrow("check"))
        return sums

    result = run(protocol, share_arithmetic(contribution), share_boolean(keys, 8), security="malicious")
    expected = np.zeros(256, dtype=np.uint64)
    np.add.at(expected, keys.astype(np.intp), contribution)
    assert opened(result).tolist() == expected.tolist()


@pytest.mark.parametrize(("tampered", "index"), [(None, 0), ("weight", -1), ("sums", 0), ("sums", -1)])
def test_aggregate_in_malicious_mode_records_each_row_block(monkeypatch, tampered, index):
    """Blocks of 128 rows, each recorded on its own and verified in chunks so small that a block's
    matrix product is cut again: the sums are exact, and a wrong word in the last block aborts."""
    from ipa.attribution import aggregate as module
    from ipa.attribution import pipeline
    from ipa.attribution.aggregate import AGGREGATE_STEPS
    from ipa.errors import MaliciousBehaviourError
    from ipa.mpc.checkpoint import CHECKPOINT_STEPS
    from ipa.mpc.memory import Tamper
    from ipa.mpc.step import Family, Steps

    steps = Steps("blocked", aggregate=AGGREGATE_STEPS, check=Family(pipeline.MAX_CHUNKS, CHECKPOINT_STEPS))
    monkeypatch.setattr(module, "_BLOCK", 128)
    monkeypatch.setattr(pipeline, "VERIFY_CHUNK_WORDS", 3000)
    rng = np.random.default_rng(11)
    keys = rng.integers(0, 256, 300, dtype=np.uint64)
    contribution = rng.integers(0, 2**64, 300, dtype=np.uint64)

    def protocol(ctx, c, k):
        ctx = ctx.enter(steps)
        phase = pipeline.Verification(ctx, "check")
        sums = aggregate(ctx.narrow("aggregate"), c, k, 256)
        phase.close()
        return sums

    inputs = share_arithmetic(contribution), share_boolean(keys, 8)
    if tampered:
        tamper = Tamper(1, f"root/aggregate/{tampered}", index=index)
        with pytest.raises(MaliciousBehaviourError):
            run(protocol, *inputs, security="malicious", tamper=tamper)
        return
    result = run(protocol, *inputs, security="malicious")
    expected = np.zeros(256, dtype=np.uint64)
    np.add.at(expected, keys.astype(np.intp), contribution)
    assert opened(result).tolist() == expected.tolist()
    assert len({m.step for m in result.messages if "/check_" in m.step and m.step.endswith("/open")}) > 6
