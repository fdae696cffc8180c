"""Boundaries and last touch with W workers per helper equal the one-process ones exactly."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipa.attribution.boundaries import adjacent_equal
from ipa.attribution.cap import cap_contributions, running_sum
from ipa.attribution.config import QueryConfig
from ipa.attribution.last_touch import last_touch
from ipa.attribution.pipeline import run_query
from ipa.attribution.rows import share_events
from ipa.mpc.collective import slices
from ipa.mpc.halo import with_halo
from ipa.mpc.memory import run_workers
from ipa.mpc.replicated import AShares
from ipa.mpc.sharing import reconstruct, share_arithmetic, share_boolean
from ipa.mpc.testing import check_collective_cost, opened, opened_blocks, run, run_distributed
from ipa.reference import attribute_query
from ipa.synthetic import generate


def _sizes(data, n: int, workers: int) -> list[int]:
    """Any W block sizes adding up to n (some possibly empty, some shorter than a halo)."""
    if data.draw(st.booleans()):
        return [s.stop - s.start for s in slices(n, workers)]
    cuts = sorted(data.draw(st.lists(st.integers(0, n), min_size=workers - 1, max_size=workers - 1)))
    return np.diff([0, *cuts, n]).tolist()


def _sorted_rows(data, n: int, tb: int, bb: int):
    """Group ids in sorted order, trigger flags, breakdown keys, timestamps non-decreasing per group."""
    group = np.cumsum(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.int64)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    same = np.concatenate([[0], (group[1:] == group[:-1]).astype(np.uint64)])[:n].astype(np.uint64)
    stamps = np.minimum(np.cumsum(rng.integers(0, 4, n)) * same, 2**tb - 1).astype(np.uint64)
    return [
        share_boolean(same, 1),
        share_boolean(rng.integers(0, 2, n, dtype=np.uint64), 1),
        share_boolean(rng.integers(0, 2**bb, n, dtype=np.uint64), bb),
        share_boolean(stamps, tb),
    ]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 40), st.integers(0, 6), st.integers(1, 4), st.data())
def test_a_halo_is_the_h_rows_before_the_block_in_the_global_order(n, h, workers, data):
    sizes = _sizes(data, n, workers)
    values = np.arange(n, dtype=np.uint64) * 3 + 1
    result = run_distributed(
        lambda ctx, c: with_halo(ctx, "halo", [c], h)[0][0], share_boolean(values, 8), workers=workers,
        sizes=sizes, timeout=30,
    )  # fmt: skip
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    for k in range(workers):
        got = reconstruct([result.outputs[i][k] for i in range(3)])
        start = max(0, bounds[k] - h)
        assert got.tolist() == values[start : bounds[k + 1]].tolist()


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 60), st.integers(1, 4), st.data())
def test_distributed_adjacent_equality_equals_the_one_process_one(n, workers, data):
    keys = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), np.uint64)
    shared = [share_boolean(np.sort(keys), 40), share_boolean(np.sort(keys) >> 1, 40)]
    fn = lambda ctx, a, b: adjacent_equal(ctx, [a, b])  # noqa: E731
    result = run_distributed(fn, *shared, workers=workers, sizes=_sizes(data, n, workers), timeout=30)
    assert [x.tolist() for x in opened_blocks(result)] == [x.tolist() for x in opened(run(fn, *shared))]


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 80),
    st.integers(1, 4),
    st.sampled_from([1, 2, 4, 8]),
    st.one_of(st.none(), st.integers(0, 6)),
    st.data(),
)
def test_distributed_last_touch_equals_the_one_process_one(n, workers, k, window, data):
    shared = _sorted_rows(data, n, tb=12, bb=4)

    def touch(ctx, g, t, b, ts):
        found = last_touch(ctx, g, t, b, ts, max_events_per_user=k, window=window)
        return [found.attributed, found.breakdown_key]

    result = run_distributed(touch, *shared, workers=workers, sizes=_sizes(data, n, workers), timeout=30)
    assert [x.tolist() for x in opened_blocks(result)] == [x.tolist() for x in opened(run(touch, *shared))]


@pytest.mark.parametrize(("workers", "sizes"), [(2, None), (3, [0, 5, 115]), (4, [1, 2, 3, 114])])
def test_the_halo_bytes_are_within_the_documented_bounds(workers, sizes):
    n, k, tb, bb = 120, 8, 12, 4
    data = np.random.default_rng(3)
    shared = [
        share_boolean(data.integers(0, 2, n, dtype=np.uint64), 1),
        share_boolean(data.integers(0, 2, n, dtype=np.uint64), 1),
        share_boolean(data.integers(0, 2**bb, n, dtype=np.uint64), bb),
        share_boolean(np.sort(data.integers(0, 2**tb, n, dtype=np.uint64)), tb),
    ]
    touched = run_distributed(
        lambda ctx, g, t, b, ts: last_touch(ctx, g, t, b, ts, max_events_per_user=k, window=5).attributed,
        *shared, workers=workers, sizes=sizes,
    )  # fmt: skip
    measured = check_collective_cost(last_touch, touched, n, W=workers, K=k, bb=bb, tb=tb, n=n)
    assert min(measured) > 0
    keys = [share_boolean(np.sort(data.integers(0, 2**40, n, dtype=np.uint64)), 40) for _ in range(2)]
    equal = run_distributed(
        lambda ctx, a, b: adjacent_equal(ctx, [a, b]), *keys, workers=workers, sizes=sizes
    )
    check_collective_cost(adjacent_equal, equal, n, W=workers, c=2, w=40, n=n)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 70), st.integers(1, 5), st.data())
def test_distributed_running_sums_and_cap_equal_the_one_process_ones(n, workers, data):
    """Users spanning several blocks, blocks empty or of one row, the carry passing through them."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    continues = rng.random(n) < data.draw(st.sampled_from([0.0, 0.5, 0.95, 1.0]))
    same_user = np.concatenate([[0], continues[1:]]).astype(np.uint64)[:n]
    values = rng.integers(0, 50, n, dtype=np.uint64)
    sizes = _sizes(data, n, workers)
    shared = [share_arithmetic(values), share_arithmetic(same_user)]
    result = run_distributed(running_sum, *shared, workers=workers, sizes=sizes, timeout=30)
    expected = np.zeros(n, np.uint64)
    for i in range(n):  # the reference: the user's total so far
        expected[i] = values[i] + (expected[i - 1] if same_user[i] else 0)
    assert opened_blocks(result).tolist() == expected.tolist()

    attributed = rng.integers(0, 2, n, dtype=np.uint64)
    capped = [share_boolean(attributed, 1), shared[0], share_boolean(same_user, 1)]
    cap = lambda ctx, a, v, u: cap_contributions(ctx, a, v, u, 60)  # noqa: E731
    spread = run_distributed(cap, *capped, workers=workers, sizes=sizes, timeout=30)
    assert opened_blocks(spread).tolist() == opened(run(cap, *capped)).tolist()


@pytest.mark.parametrize(("workers", "sizes"), [(2, None), (4, [0, 1, 0, 99])])
def test_the_carry_bytes_are_within_the_documented_bound(workers, sizes):
    n = 100
    shared = [share_arithmetic(np.arange(n)), share_arithmetic(np.ones(n))]
    result = run_distributed(running_sum, *shared, workers=workers, sizes=sizes)
    assert opened_blocks(result).tolist() == np.cumsum(np.arange(n)).tolist()  # one user throughout
    measured = check_collective_cost(running_sum, result, n, W=workers, n=n)
    assert min(measured) > 0


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 120), st.integers(1, 4), st.sampled_from([None, "shop.example"]), st.data())
def test_the_whole_query_on_workers_equals_the_reference(n, workers, site, data):
    """Sort, boundaries, last touch, cap and aggregation, each triple on its block: the W results add up."""
    config = QueryConfig(num_breakdowns=8, cap=40, window=3_000, max_events_per_user=4, timestamp_bits=14)
    seed = data.draw(st.integers(0, 2**16))
    named = {"publishers": ("news.example",), "advertisers": ("shop.example",)} if site else {}
    events = generate(n, seed=seed, num_breakdowns=8, timestamp_bits=14, max_user_events=8, **named)
    sizes = _sizes(data, n, workers)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    shares = share_events(events, config, site)
    blocks = [[rows.block(slice(bounds[k], bounds[k + 1])) for k in range(workers)] for rows in shares]
    result = run_workers(
        lambda ctx, rows: run_query(ctx, rows, config).sums, blocks, workers=workers, timeout=60
    )
    sums = reconstruct([_added(by_worker) for by_worker in result.outputs])
    expected = attribute_query(events, config, site)
    assert sums.tolist() == expected.tolist()


def _added(shares: list[AShares]) -> AShares:
    """One helper's shares of the sum of its workers' results (shares add)."""
    return AShares(sum(s.left for s in shares), sum(s.right for s in shares))
