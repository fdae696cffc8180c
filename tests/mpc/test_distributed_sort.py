"""The sort, shuffle and move_rows with W workers per helper equal the one-process ones exactly."""

import time
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipa.errors import MaliciousBehaviourError, ProtocolError, TransportError
from ipa.mpc.collective import slices
from ipa.mpc.memory import Tamper, WorkersResult, run_workers
from ipa.mpc.permute import move_rows
from ipa.mpc.sharing import share_arithmetic, share_boolean
from ipa.mpc.shuffle import shuffle
from ipa.mpc.sort import sort
from ipa.mpc.testing import (
    check_collective_cost,
    check_cost,
    documented_collective_cost,
    opened,
    opened_blocks,
    per_party,
    run,
    run_distributed,
)
from strategies import words


def _sizes(data, n: int, workers: int) -> list[int]:
    """Any W block sizes adding up to n (some possibly empty), or the even ones."""
    if data.draw(st.booleans()):
        return [s.stop - s.start for s in slices(n, workers)]
    cuts = sorted(data.draw(st.lists(st.integers(0, n), min_size=workers - 1, max_size=workers - 1)))
    return np.diff([0, *cuts, n]).tolist()


def _sort(digit_bits: int):
    return lambda ctx, k, *p: sort(ctx, k, list(p), digit_bits=digit_bits)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(1, 4), st.integers(1, 4), st.data())
def test_distributed_sort_equals_the_one_process_sort(width, digit_bits, workers, data):
    keys = data.draw(words(width, max_rows=data.draw(st.sampled_from([3, 40, 300]))))
    if len(keys) > 4 and data.draw(st.booleans()):
        keys[: len(keys) // 2] = keys[-1]  # many ties
    n = len(keys)
    sizes = _sizes(data, n, workers)
    rows = np.arange(n, dtype=np.uint64)
    tags = (rows * 5 + 1).astype(np.uint8) & 0x7F
    shared = [share_boolean(keys, width), share_arithmetic(rows), share_boolean(tags, 7)]
    result = run_distributed(_sort(digit_bits), *shared, workers=workers, sizes=sizes, timeout=60)
    out_rows, out_tags = opened_blocks(result)
    order = np.argsort(keys, kind="stable")
    assert out_rows.tolist() == order.tolist()
    assert out_tags.tolist() == tags[order].tolist()
    assert [len(o[0]) for o in result.outputs[1]] == [s.stop - s.start for s in slices(n, workers)]
    single = run(_sort(digit_bits), *shared)
    assert [o.tolist() for o in opened(single)] == [out_rows.tolist(), out_tags.tolist()]
    assert result.bytes_sent() == single.bytes_sent()  # the same cross-helper bytes


def _by_step(result: WorkersResult) -> list[Counter]:
    """Each helper's bytes per step below the triples' roots, summed over its workers."""
    per_helper = []
    for by_worker in result.stats:
        total: Counter = Counter()
        for stats in by_worker:
            total.update({step.partition("/")[2]: b for step, b in stats.bytes_sent.items()})
        per_helper.append(total)
    return per_helper


@pytest.mark.parametrize(("workers", "n", "sizes"), [(2, 240, None), (3, 240, [0, 200, 40]), (4, 3, None)])
def test_cross_helper_messages_per_step_are_the_one_process_ones(workers, n, sizes):
    rng = np.random.default_rng(5)
    w, d = 20, 3
    shared = [share_boolean(rng.integers(0, 2**w, n, dtype=np.uint64), w), share_arithmetic(np.arange(n))]
    result = run_distributed(_sort(d), *shared, workers=workers, sizes=sizes)
    single = run(_sort(d), *shared)
    assert _by_step(result) == [
        Counter({step.partition("/")[2]: b for step, b in s.bytes_sent.items()}) for s in single.stats
    ]
    for k in range(workers):  # each triple within the sort's documented rounds
        check_cost(sort, result.triple(k), n, w=w, d=d)


@pytest.mark.parametrize(
    ("workers", "sizes"), [(2, None), (3, None), (3, [240, 0, 0]), (4, [10, 90, 80, 60])]
)
def test_collective_bytes_are_within_the_documented_bound(workers, sizes):
    """The bound holds; since only rows that change worker travel, about (1 − 1/W) of it is used."""
    n, w, d = 240, 20, 3
    rng = np.random.default_rng(6)
    payload = [share_arithmetic(np.arange(n)), share_boolean(rng.integers(0, 128, n, dtype=np.uint64), 7)]
    p = 8 + 1  # bytes of one payload row
    key = share_boolean(rng.integers(0, 2**w, n, dtype=np.uint64), w)
    result = run_distributed(_sort(d), key, *payload, workers=workers, sizes=sizes)
    measured = check_collective_cost(sort, result, n, w=w, d=d, p=p, W=workers, n=n)
    fixed = documented_collective_cost(sort, w=w, d=d, p=0, W=workers, n=n) - documented_collective_cost(
        sort, w=w, d=d, p=0, W=1, n=n
    )
    moving = documented_collective_cost(sort, w=w, d=d, p=p, W=1, n=n)
    assert min(measured) >= fixed + 0.4 * (1 - 1 / workers) * moving  # rows do move

    columns = [share_arithmetic(np.arange(n)), share_boolean(np.arange(n) % 128, 7)]
    shuffled = run_distributed(lambda ctx, *c: shuffle(ctx, c), *columns, workers=workers, sizes=sizes)
    check_collective_cost(shuffle, shuffled, n, s=8 + 1, W=workers, n=n)
    assert sorted(opened_blocks(shuffled)[0].tolist()) == list(range(n))
    dest = share_arithmetic(rng.permutation(n), np.uint32)
    moved = run_distributed(
        lambda ctx, t, *c: move_rows(ctx, t, c), dest, *columns, workers=workers, sizes=sizes
    )
    check_collective_cost(move_rows, moved, n, s=4 + 8 + 1, b=8 + 1, W=workers, n=n)


def test_one_worker_per_helper_is_the_one_process_sort():
    n, w = 50, 12
    rng = np.random.default_rng(8)
    shared = [share_boolean(rng.integers(0, 2**w, n, dtype=np.uint64), w), share_arithmetic(np.arange(n))]
    result = run_distributed(_sort(3), *shared, workers=1)
    single = run(_sort(3), *shared)
    assert _by_step(result) == [
        Counter({step.partition("/")[2]: b for step, b in s.bytes_sent.items()}) for s in single.stats
    ]
    assert result.collective_bytes() == [0, 0, 0]
    assert opened_blocks(result)[0].tolist() == opened(single)[0].tolist()


def _inputs(shared, sizes):
    """Per helper, per worker: its block of every shared column (blocks of ``sizes``)."""
    bounds = np.cumsum([0, *sizes])
    return [
        [tuple(col[i][..., bounds[k] : bounds[k + 1]] for col in shared) for k in range(len(sizes))]
        for i in range(3)
    ]


def test_a_worker_that_fails_mid_sort_wakes_every_other_worker():
    """H3's worker 1 holds one row fewer than its triple: the triple's first message fails, and the
    other workers, waiting on their triples and on the collectives, fail at once instead of waiting."""
    n, timeout = 60, 30.0
    rng = np.random.default_rng(9)
    shared = [share_boolean(rng.integers(0, 2**10, n, dtype=np.uint64), 10), share_arithmetic(np.arange(n))]
    inputs = _inputs(shared, [20, 20, 20])
    key, payload = inputs[2][1]
    inputs[2][1] = (key[..., 1:], payload[..., 1:])
    start = time.monotonic()
    with pytest.raises((TransportError, ProtocolError)):
        run_workers(lambda ctx, a: sort(ctx, a[0], [a[1]]), inputs, workers=3, timeout=timeout)
    assert time.monotonic() - start < timeout / 2  # woken, not timed out


def test_destinations_that_are_not_a_permutation_are_refused():
    dest = share_arithmetic(np.array([0, 0, 1, 2]), np.uint32)
    with pytest.raises(ProtocolError, match=r"not fill|not a permutation"):
        run_distributed(lambda ctx, t: move_rows(ctx, t, [t]), dest, workers=2, timeout=30)
    dest = share_arithmetic(np.array([0, 1, 7, 2]), np.uint32)
    with pytest.raises(ProtocolError, match="not a permutation"):
        run_distributed(lambda ctx, t: move_rows(ctx, t, [t]), dest, workers=2, timeout=30)


def test_bad_worker_inputs():
    with pytest.raises(ValueError, match="one per worker"):
        run_workers(lambda ctx, a: a, per_party([1, 2, 3]), workers=2)
    with pytest.raises(ValueError, match="block sizes adding up"):
        run_distributed(_sort(3), share_boolean(np.arange(4), 3), workers=2, sizes=[1, 2])


def _single_per_step(stats) -> Counter:
    return Counter({step.partition("/")[2]: b for step, b in stats.bytes_sent.items()})


@pytest.mark.parametrize(("workers", "sizes"), [(2, None), (3, [0, 25, 5])])
def test_malicious_distributed_sort_is_exact_and_each_triple_sends_what_one_process_would(workers, sizes):
    """Exact with uneven blocks and an empty worker; with even ones, triple k's messages are, step by
    step, those of one process sorting its rows."""
    n, w, d = 30, 7, 3
    rng = np.random.default_rng(10)
    keys = rng.integers(0, 2**w, n, dtype=np.uint64)
    keys[:10] = keys[-1]  # ties
    tags = np.arange(n, dtype=np.uint64) & 0x7F
    shared = [share_boolean(keys, w), share_boolean(tags, 7)]
    result = run_distributed(_sort(d), *shared, workers=workers, sizes=sizes, security="malicious")
    (out,) = opened_blocks(result)
    assert out.tolist() == tags[np.argsort(keys, kind="stable")].tolist()
    for k, size in enumerate([] if sizes else [s.stop - s.start for s in slices(n, workers)]):
        alone = run(
            _sort(d), share_boolean(keys[:size], w), share_boolean(tags[:size], 7), security="malicious"
        )
        assert [_single_per_step(result.stats[i][k]) for i in range(3)] == [
            _single_per_step(s) for s in alone.stats
        ]
    check_collective_cost(sort, result, n, security="malicious", w=w, d=d, p=1, W=workers, n=n)


@pytest.mark.parametrize(
    ("party", "step"),
    [
        (1, "w1/pass_1/move/shuffle/perm_12"),  # a shuffle message: the tags catch it
        (0, "w0/pass_1/move/shuffle/perm_01"),  # H1's first stage: H2's and H3's digests catch it
        (0, "w1/pass_0/one_hot/level_0"),  # a product behind dest: the checkpoint catches it
    ],
)
def test_a_tampered_triple_message_aborts_the_malicious_distributed_sort(party, step):
    n, w = 24, 6
    rng = np.random.default_rng(11)
    shared = [
        share_boolean(rng.integers(0, 2**w, n, dtype=np.uint64), w),
        share_boolean(np.arange(n) % 64, 6),
    ]
    honest = run_distributed(_sort(3), *shared, workers=2, security="malicious")
    assert any(m.party == party and m.step == step for m in honest.messages)
    with pytest.raises(MaliciousBehaviourError):
        run_distributed(
            _sort(3), *shared, workers=2, security="malicious", tamper=Tamper(party, step), timeout=60
        )
