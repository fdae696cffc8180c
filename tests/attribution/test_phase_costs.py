"""Every attribution phase costs what its docstring says: rounds (latency) and words per row, per helper."""

import numpy as np
import pytest

from ipa.attribution.aggregate import aggregate, in_range
from ipa.attribution.boundaries import adjacent_equal
from ipa.attribution.cap import cap_contributions, running_sum
from ipa.attribution.last_touch import last_touch
from ipa.mpc.sharing import share_arithmetic, share_boolean
from ipa.mpc.testing import check_cost, run

RNG = np.random.default_rng(11)


def arith(n: int, bits: int = 63):
    return share_arithmetic(RNG.integers(0, 2**bits, n, dtype=np.uint64))


def flags(n: int, width: int = 1):
    return share_boolean(RNG.integers(0, 2**width, n, dtype=np.uint64), width)


@pytest.mark.parametrize("n", [1, 2, 5, 64, 100])
def test_cap(n):
    check_cost(running_sum, run(running_sum, arith(n), arith(n, 1)), n, n=n)
    result = run(lambda ctx, a, v, s: cap_contributions(ctx, a, v, s, 100), flags(n), arith(n, 16), flags(n))
    check_cost(cap_contributions, result, n, n=n)


@pytest.mark.parametrize("k", [1, 2, 8, 64])
@pytest.mark.parametrize("window", [None, 86_400])
@pytest.mark.parametrize(("tb", "bb"), [(32, 8), (20, 3)])
def test_last_touch(k, window, tb, bb):
    n = 40
    result = run(
        lambda ctx, g, t, b, ts: last_touch(ctx, g, t, b, ts, max_events_per_user=k, window=window),
        flags(n),
        flags(n),
        flags(n, bb),
        flags(n, tb),
    )
    check_cost(last_touch, result, n, 1, K=k, tb=tb, bb=bb, W=int(window is not None))


@pytest.mark.parametrize(("w", "c"), [(1, 1), (40, 2), (48, 2), (64, 3)])
def test_adjacent_equal(w, c):
    n = 30
    result = run(lambda ctx, *cols: adjacent_equal(ctx, list(cols)), *[flags(n, w) for _ in range(c)])
    check_cost(adjacent_equal, result, n, 1, w=w, c=c, n=n)


@pytest.mark.parametrize("w", [1, 2, 3, 4, 8])
def test_aggregate(w):
    n = 64
    result = run(lambda ctx, v, key: aggregate(ctx, v, key, 2**w), arith(n), flags(n, w))
    check_cost(aggregate, result, n, w=w, n=n, l=(w + 1) // 2, h=w // 2)


@pytest.mark.parametrize(("w", "bits"), [(2, 1), (8, 4), (8, 5), (8, 1), (16, 3)])
def test_in_range(w, bits):
    n = 64
    result = run(lambda ctx, v, key: in_range(ctx, v, key, bits), arith(n), flags(n, w))
    check_cost(in_range, result, n, k=w - bits)
