"""What a release states about its noise, and that released sums fall within it at the stated rate."""

import math

import numpy as np
import pytest

from ipa.dp import calibrate, sample_noise
from ipa.dp.noise import NO_NOISE, noise_statement


def test_an_exact_release_states_no_noise():
    statement = noise_statement([0.0, 0.0, 0.0], 3)
    assert statement.mechanism == NO_NOISE and statement.std == (0.0,) * 3 and statement.ci95 == (0,) * 3
    assert statement.to_json() == {"mechanism": "none", "std": [0.0] * 3, "ci95": [0] * 3}


@pytest.mark.parametrize("scale", [0.3, 0.57, 1.0, 2.5, 7.0, 49.0, 51.0, 5000.0])
def test_std_and_interval_match_the_sum_of_three_discrete_gaussians(scale):
    statement = noise_statement([scale] * 3, 2)
    assert statement.mechanism == "discrete_gaussian" and len(statement.std) == 2
    std = statement.std[0]
    assert std <= math.sqrt(3) * scale * (1 + 1e-12)  # a discrete Gaussian's variance is at most σ²
    if scale >= 1:
        assert std == pytest.approx(math.sqrt(3) * scale, rel=1e-6)
    half = statement.ci95[0]
    assert half >= 1.959 * std - 1  # never narrower than the normal's, up to the integer lattice
    assert half <= math.ceil(1.96 * std) + 1


def test_small_scales_use_the_exact_quantile():
    # σ_h = 0.57: the error is mostly −1, 0 or 1; ±1.96·std would claim 95 % for ±1 only.
    statement = noise_statement([0.57] * 3, 1)
    assert statement.ci95[0] == 2


def test_released_sums_fall_within_their_intervals_at_the_stated_rate():
    """20,000 releases of a query's noise, sampled exactly as the three helpers sample it.

    OpenDP's sampler draws from a CSPRNG and cannot be seeded; the bound is
    wide instead: coverage must be at least 0.94 and within 0.01 of what a
    normal of the stated std puts inside the integer interval (6.5 binomial
    standard deviations; failure probability below 1e-10): the smallest
    integer interval holding 95 % may hold up to a lattice step more.
    At σ_h = 0.8 the error takes few values, and the smallest integer interval
    holding 95 % holds 99 %: there only the lower end applies.
    """
    n = 20_000
    for scale in (calibrate(1.0, 1e-9, 1).scale, 0.8, 60.0):
        statement = noise_statement([scale] * 3, n)
        error = sum(sample_noise(scale, n) for _ in range(3))
        coverage = np.mean(np.abs(error) <= statement.ci95[0])
        assert coverage >= 0.94, (scale, coverage)
        if scale >= 1:  # the integer interval holds what a normal of that std puts within t + ½
            half = statement.ci95[0]
            expected = math.erf((half + 0.5) / (statement.std[0] * math.sqrt(2)))
            assert 0.95 <= expected < 0.965, (scale, expected)
            assert abs(coverage - expected) < 0.01, (scale, coverage, expected)
        assert np.std(error) == pytest.approx(statement.std[0], rel=0.05)


def test_bad_scales_are_refused():
    with pytest.raises(ValueError, match="finite and non-negative"):
        noise_statement([1.0, -1.0, 1.0], 1)
