"""The distributed shuffle: a uniformly random permutation of all n rows, applied by random routing.

Each permutation is the W×W counts (group PRSS) and two local permutations
per worker (triple PRSS), so no worker holds a permutation of all n rows
(:mod:`ipa.mpc.shuffle`, ``docs/scaling.md``). Checked here: the output is
the input rows, permuted, in even blocks, for any blocks and W = 1–4, in both
modes; the routing itself gives every permutation of a small case equally
often (a chi-square test on seeded draws, which a routing without the
receiver's permutation fails); rows spread over the workers; tampered or
deviating workers are caught in malicious mode.
"""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import permutations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipa.errors import MaliciousBehaviourError
from ipa.mpc import shuffle as shuffle_module
from ipa.mpc.collective import (
    MAX_SHUFFLED_ROWS,
    Blocks,
    MemoryCollectives,
    permute_blocks,
    slices,
    transfer_counts,
)
from ipa.mpc.memory import Tamper
from ipa.mpc.prss import PRSS
from ipa.mpc.sharing import share_arithmetic, share_boolean
from ipa.mpc.shuffle import shuffle
from ipa.mpc.testing import check_collective_cost, opened_blocks, run_distributed

RNG = np.random.default_rng(23)


def _sizes(data, n: int, workers: int) -> list[int]:
    """Any W block sizes adding up to n (some possibly empty), or the even ones."""
    if data.draw(st.booleans()):
        return [s.stop - s.start for s in slices(n, workers)]
    cuts = sorted(data.draw(st.lists(st.integers(0, n), min_size=workers - 1, max_size=workers - 1)))
    return np.diff([0, *cuts, n]).tolist()


def _columns(n: int):
    """Row ids as a uint64 arithmetic column, a 7-bit boolean one and a stacked pair of bits."""
    ids = RNG.permutation(n).astype(np.uint64)  # distinct: a mixed-up row cannot pass as another
    return ids, [
        share_arithmetic(ids),
        share_boolean((ids * 5 + 1) & 0x7F, 7),
        share_boolean(np.stack([ids & 1, (ids >> 1) & 1]), 1),
    ]


def _three(ctx, a, b, c):
    return shuffle(ctx, [a, b, c])


def _check_rows_kept(ids: np.ndarray, result, n: int, workers: int) -> np.ndarray:
    """The output is the input rows, each whole, in the even blocks; returns the output ids."""
    out, tags, bits = opened_blocks(result)
    assert sorted(out.tolist()) == sorted(ids.tolist())
    assert tags.tolist() == ((out * 5 + 1) & 0x7F).tolist()
    assert bits.tolist() == [(out & 1).tolist(), ((out >> 1) & 1).tolist()]
    assert [len(o[0]) for o in result.outputs[2]] == [s.stop - s.start for s in slices(n, workers)]
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 40), st.integers(1, 4), st.data())
def test_the_distributed_shuffle_permutes_the_rows_of_any_blocks(n, workers, data):
    """W = 1–4, blocks of any size, empty ones and W > n included: if the two helpers applying a
    permutation applied different ones, the rows would come out mixed up and not pass."""
    ids, shared = _columns(n)
    sizes = _sizes(data, n, workers)
    result = run_distributed(_three, *shared, workers=workers, sizes=sizes, timeout=60)
    _check_rows_kept(ids, result, n, workers)
    if n:
        check_collective_cost(shuffle, result, n, s=8 + 1 + 2, W=workers, n=n)


@pytest.mark.parametrize(("workers", "sizes"), [(3, [0, 25, 5]), (4, None), (5, [1, 0, 0, 2, 0])])
def test_the_malicious_distributed_shuffle_permutes_the_rows(workers, sizes):
    n = 30 if sizes is None else sum(sizes)
    ids, shared = _columns(n)
    result = run_distributed(_three, *shared, workers=workers, sizes=sizes, security="malicious", timeout=60)
    _check_rows_kept(ids, result, n, workers)


def test_rows_spread_over_every_worker():
    """Each output block holds rows of every input block, and the order is not the identity.

    For n = 400, W = 4 an output block misses a given input block with probability about
    (3/4)^100 < 10^-12, so this fails only if the routing does not spread rows.
    """
    n, workers = 400, 4
    ids = np.arange(n, dtype=np.uint64)
    result = run_distributed(lambda ctx, c: shuffle(ctx, [c]), share_arithmetic(ids), workers=workers)
    (out,) = opened_blocks(result)
    assert sorted(out.tolist()) == ids.tolist()
    assert out.tolist() != ids.tolist()
    origin = Blocks.even(n, workers).owner(out.astype(np.int64))
    for block in slices(n, workers):
        assert set(origin[block].tolist()) == set(range(workers))
    moved = np.mean(origin != Blocks.even(n, workers).owner(np.arange(n)))
    assert 0.6 < moved < 0.9  # 1 − 1/W = 0.75 of the rows change worker, on average


def test_no_worker_permutes_more_than_its_own_rows(monkeypatch):
    """Each worker's local permutations are of the rows it holds and receives, never of all n."""
    sizes, workers = [0, 300, 20, 80], 4
    seen = []
    original = shuffle_module.permute_blocks

    def recording(collective, at, arrays, counts, before, after):
        seen.append((collective.index, len(before), len(after), counts.shape))
        return original(collective, at, arrays, counts, before, after)

    monkeypatch.setattr(shuffle_module, "permute_blocks", recording)
    ids, shared = _columns(400)
    _check_rows_kept(ids, run_distributed(_three, *shared, workers=workers, sizes=sizes), 400, workers)
    assert len(seen) == 3 * 2 * workers  # each helper applies two of the three permutations
    assert all(shape == (workers, workers) and received == 100 for _, _, received, shape in seen)
    # H1's and H2's first permutation starts from the input blocks, every other from even ones
    assert Counter((k, rows) for k, rows, _, _ in seen) == Counter(
        {**{(k, size): 2 for k, size in enumerate(sizes)}, **{(k, 100): 4 for k in range(workers)}}
    )


# --- the routing alone, from seeded generators -------------------------------------------------------


def _route_once(pool, group: MemoryCollectives, step: str, rows: Blocks, seed: int, receiver_shuffles: bool):
    """One permutation of range(n) by :func:`permute_blocks`, each of the W workers in a thread.

    ``seed`` stands for the PRSS: counts from one generator every worker draws alike, each worker's
    local permutations from its own, as in :mod:`ipa.mpc.shuffle`.
    """
    to = Blocks.even(rows.n, rows.workers)

    def worker(k: int) -> np.ndarray:
        counts = transfer_counts(np.random.default_rng([seed, 999]), rows, to)
        local = np.random.default_rng([seed, k])
        before, after = local.permutation(rows.size(k)), local.permutation(to.size(k))
        if not receiver_shuffles:
            after = np.arange(to.size(k))
        ids = np.arange(rows.n)[rows.rows(k)]
        return permute_blocks(group.member(k), step, [ids], counts, before, after)[0]

    return np.concatenate(list(pool.map(worker, range(rows.workers))))


def _chi_square(sizes: list[int], draws: int, receiver_shuffles: bool = True) -> float:
    rows = Blocks.of_sizes(sizes)
    group = MemoryCollectives(len(sizes), PRSS(bytes(16), bytes(16)), timeout=30)
    with ThreadPoolExecutor(rows.workers) as pool:
        seen = Counter(
            tuple(_route_once(pool, group, f"s{i}", rows, i, receiver_shuffles).tolist())
            for i in range(draws)
        )
    assert all(sorted(p) == list(range(rows.n)) for p in seen)
    expected = draws / len(list(permutations(range(rows.n))))
    cells = [seen.get(p, 0) for p in permutations(range(rows.n))]
    return sum((c - expected) ** 2 / expected for c in cells)


@pytest.mark.parametrize("sizes", [[3, 1], [0, 4], [2, 0, 2], [1, 1, 1, 1]])
def test_the_routing_gives_every_permutation_equally_often(sizes):
    """1,200 routed permutations of 4 rows: χ² over the 24 permutations (23 degrees of freedom)
    stays below 70, exceeded by a uniform routing with probability about 10^-6 (seeded, so the
    outcome is fixed); a routing without the receiver's permutation is far from it."""
    assert _chi_square(sizes, 1200) < 70


def test_the_chi_square_test_fails_a_routing_that_is_not_uniform():
    assert _chi_square([2, 2], 1200, receiver_shuffles=False) > 500


def test_transfer_counts_have_the_blocks_sums_and_the_hypergeometric_mean():
    rows, to = Blocks.of_sizes([50, 0, 30, 20]), Blocks.even(100, 4)
    generator = np.random.default_rng(3)
    draws = np.array([transfer_counts(generator, rows, to) for _ in range(2000)])
    assert (draws.sum(axis=2) == [50, 0, 30, 20]).all()
    assert (draws.sum(axis=1) == 25).all()
    mean = np.outer([50, 0, 30, 20], [25, 25, 25, 25]) / 100  # E C[k, j] = in_k · out_j / n
    assert np.abs(draws.mean(axis=0) - mean).max() < 0.3


def test_transfer_counts_and_permute_blocks_refuse_what_does_not_fit():
    generator = np.random.default_rng(4)
    with pytest.raises(ValueError, match="at most 999999999 rows"):
        transfer_counts(
            generator, Blocks.even(MAX_SHUFFLED_ROWS + 1, 4), Blocks.even(MAX_SHUFFLED_ROWS + 1, 4)
        )
    assert transfer_counts(
        generator, Blocks.even(MAX_SHUFFLED_ROWS, 2), Blocks.even(MAX_SHUFFLED_ROWS, 2)
    ).sum()
    with pytest.raises(ValueError, match="as many rows"):
        transfer_counts(generator, Blocks.even(5, 2), Blocks.even(6, 2))
    group = MemoryCollectives(2, PRSS(bytes(16), bytes(16)))
    counts = np.array([[1, 1], [1, 1]])
    with pytest.raises(ValueError, match="local permutations do not match"):
        permute_blocks(group.member(0), "s", [np.arange(2)], counts, np.arange(3), np.arange(2))


# --- malicious mode: tampered messages and deviating workers -----------------------------------------


@pytest.mark.parametrize(
    ("party", "step"),
    [(0, "w1/perm_01"), (1, "w0/perm_12"), (2, "w2/perm_20"), (0, "w2/perm_20")],
)
def test_a_tampered_triple_message_aborts_the_malicious_distributed_shuffle(party, step):
    _, shared = _columns(24)
    honest = run_distributed(_three, *shared, workers=3, security="malicious", timeout=60)
    assert any(m.party == party and m.step == step for m in honest.messages)
    with pytest.raises(MaliciousBehaviourError):
        run_distributed(
            _three, *shared, workers=3, security="malicious", tamper=Tamper(party, step), timeout=60
        )


@pytest.mark.parametrize(("helper", "step"), [(1, "perm_01"), (2, "perm_01"), (3, "perm_12"), (1, "perm_20")])
def test_a_worker_permuting_its_rows_differently_is_caught(monkeypatch, helper, step):
    """Worker 1 of one helper permutes what it receives by another order than its peer's worker 1:
    the two halves of a permutation disagree, and the tags catch it."""
    workers = 3
    original = shuffle_module.permute_blocks
    thread = f"H{(helper - 1) * workers + 1 + 1}"  # run_workers names worker k of Hi H{i·W + k + 1}

    def deviating(collective, at, arrays, counts, before, after):
        if threading.current_thread().name == thread and at.startswith(f"{step}/"):
            after = np.roll(after, 1)
        return original(collective, at, arrays, counts, before, after)

    monkeypatch.setattr(shuffle_module, "permute_blocks", deviating)
    ids, shared = _columns(24)
    with pytest.raises(MaliciousBehaviourError, match="shuffle tags"):
        run_distributed(_three, *shared, workers=workers, security="malicious", timeout=60)
    monkeypatch.setattr(shuffle_module, "permute_blocks", original)
    _check_rows_kept(ids, run_distributed(_three, *shared, workers=workers, timeout=60), 24, workers)
