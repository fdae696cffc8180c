"""The bucket bound: its formula against the assignment the checkpoint uses, and the chosen plans."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipa.mpc.buckets import (
    MIN_BUCKETS,
    SECURITY_BITS,
    CoinStream,
    Plan,
    assign,
    coin_generator,
    log2_bound,
    parameters,
    uniform_permutation,
)


def survives(plan: Plan, bad: int, generator: CoinStream) -> bool:
    """Triples 0 … bad−1 are bad: none opened, and they fill whole buckets (the adversary's only win)."""
    at = assign(plan, generator)
    if (at.opened < bad).any():
        return False
    buckets = np.concatenate([at.first[:, None], at.others], axis=1) < bad
    return bool((buckets.all(1) | ~buckets.any(1)).all())


@pytest.mark.parametrize("m", [1, 2, 4])
def test_the_bound_matches_the_assignment_on_toy_parameters(m):
    """Soundness calibration: N = 4 buckets of B = 2, C = 1 opened; the adversary makes m·B triples bad."""
    plan, trials = Plan(units=4, buckets=4, size=2, opened=1), 6000
    generator = coin_generator(np.array([m, 17], np.uint64))
    wins = sum(survives(plan, m * plan.size, generator) for _ in range(trials))
    n, b, c, total = 4, 2, 1, 9
    p = math.comb(n, m) * math.comb(total - m * b, c) / math.comb(total, c) / math.comb(n * b, m * b)
    assert abs(wins / trials - p) < 4 * math.sqrt(p * (1 - p) / trials) + 1e-9
    assert math.isclose(
        log2_bound(4, 2, 1),
        math.log2(
            max(
                math.comb(n, k) * math.comb(total - k * b, c) / math.comb(total, c) / math.comb(n * b, k * b)
                for k in range(1, n + 1)
            )
        ),
    )


def test_a_bad_triple_count_that_is_not_a_multiple_of_b_never_survives():
    plan = Plan(units=4, buckets=4, size=2, opened=1)
    generator = coin_generator(np.array([1, 2], np.uint64))
    assert not any(survives(plan, 3, generator) for _ in range(2000))


@pytest.mark.parametrize("units", [0, 1, 255, 1000, 10_000, 100_000])
def test_chosen_plans_are_sound_and_minimal(units):
    plan = parameters(units)
    assert plan.buckets == max(units, MIN_BUCKETS)
    assert log2_bound(plan.buckets, plan.size, plan.opened) <= -SECURITY_BITS
    if plan.opened > 1:
        assert log2_bound(plan.buckets, plan.size, plan.opened - 1) > -SECURITY_BITS
    # Each P(m) falls as C grows, so if B − 1 fails at the largest C tried it fails at every C.
    assert log2_bound(plan.buckets, plan.size - 1, 64) > -SECURITY_BITS


def test_plans_at_a_glance():
    assert [(p.size, p.opened) for p in map(parameters, (1, 10_000, 100_000))] == [(6, 5), (4, 3), (4, 3)]


def test_without_cut_and_choose_all_bad_triples_win():
    """With C = 0, equal errors on every triple pass every bucket: why C ≥ 1 (and the m = N end)."""
    assert log2_bound(8, 3, 0) == 0.0


def every_m(n: int, b: int, c: int) -> float:
    """log2 of max over every m of P(m) (``ipa.mpc.buckets``' docstring), from a table of log-factorials."""
    total = n * b + c
    lf = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, total + 1, dtype=np.float64)))])
    m = np.arange(1, n + 1)

    def lbinom(top: np.ndarray | int, k: np.ndarray | int) -> np.ndarray:
        return lf[top] - lf[k] - lf[np.subtract(top, k)]

    log_p = lbinom(n, m) + lbinom(total - m * b, c) - lbinom(total, c) - lbinom(n * b, m * b)
    return float(log_p.max() / math.log(2.0))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3000), b=st.integers(2, 8), c=st.integers(0, 64))
def test_the_bound_equals_its_maximum_over_every_m(n, b, c):
    """The middle's blocks only bound from above; the maximum itself is found exactly."""
    assert math.isclose(log2_bound(n, b, c), every_m(n, b, c), abs_tol=1e-7)


@pytest.mark.parametrize(
    ("n", "b", "c"), [(10_000, 4, 3), (100_000, 4, 3), (400_000, 4, 2), (1_000_000, 3, 2), (4_194_304, 3, 2)]
)
def test_the_bound_of_batches_the_query_makes_equals_every_m(n, b, c):
    assert math.isclose(log2_bound(n, b, c), every_m(n, b, c), abs_tol=1e-6)


def _frequencies(draw, m: int, trials: int) -> dict[tuple[int, ...], int]:
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(trials):
        p = tuple(int(v) for v in draw(m))
        counts[p] = counts.get(p, 0) + 1
    return counts


def test_the_coins_permutation_is_a_uniform_permutation():
    stream = coin_generator(np.array([3, 5], np.uint64))
    for m in (0, 1, 2, 1000, 65_537):
        p = uniform_permutation(stream, m)
        assert p.dtype == np.int64 and np.array_equal(np.sort(p), np.arange(m))
    counts = _frequencies(lambda m: uniform_permutation(stream, m), 3, 6000)
    assert len(counts) == 6 and all(abs(c - 1000) < 4 * math.sqrt(1000 * 5 / 6) for c in counts.values())


def test_the_coins_permutation_is_the_same_for_the_same_coin():
    a = uniform_permutation(coin_generator(np.array([7, 9], np.uint64)), 10_000)
    b = uniform_permutation(coin_generator(np.array([7, 9], np.uint64)), 10_000)
    c = uniform_permutation(coin_generator(np.array([7, 10], np.uint64)), 10_000)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


class _TiedFirst(CoinStream):
    """The coin's stream, except that its first ``ties`` draws give every element one key."""

    def __init__(self, coin: np.ndarray, ties: int) -> None:
        super().__init__(coin)
        self.ties = ties

    def words(self, count: int) -> np.ndarray:
        if self.ties:
            self.ties -= 1
            return np.full(count, 12345 << 40, np.uint64)
        return super().words(count)


def test_tied_keys_are_ordered_uniformly_by_fresh_keys():
    """All keys equal (and then equal again): the order among them must still be uniform, not by index."""
    stream = _TiedFirst(np.array([1, 1], np.uint64), 0)

    def draw(m: int) -> np.ndarray:
        stream.ties = 2  # the packed sort ties everything, and so does the first round of fresh keys
        return uniform_permutation(stream, m)

    counts = _frequencies(draw, 3, 6000)
    assert len(counts) == 6 and all(abs(c - 1000) < 4 * math.sqrt(1000 * 5 / 6) for c in counts.values())
