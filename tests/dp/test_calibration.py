"""Calibration: argument errors, monotonicity, and that the scale meets exactly its target."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from functools import cache

import numpy as np
import opendp.prelude as dp
import pytest

from ipa.dp import NoiseCalibration, calibrate, compose, epsilon_of, rho_of
from ipa.errors import InputError

DELTA = 1e-6


@cache
def _calibrate(epsilon: float, delta: float, cap: int) -> NoiseCalibration:
    return calibrate(epsilon, delta, cap)


# --- argument errors ---------------------------------------------------------


@pytest.mark.parametrize("epsilon", [0, 0.0, -1.0, math.inf, math.nan, True, "1", None])
def test_calibrate_refuses_bad_epsilon(epsilon: object) -> None:
    with pytest.raises(InputError, match=r"^epsilon must be a positive finite number, got "):
        calibrate(epsilon, DELTA, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("delta", [0, 0.0, 1, 1.0, -1e-6, 1.5, math.nan, math.inf, False, "1e-6"])
def test_calibrate_refuses_bad_delta(delta: object) -> None:
    with pytest.raises(InputError, match=r"^delta must be a number in \(0, 1\), got "):
        calibrate(1.0, delta, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("cap", [-1, 1.5, 2.0, True, "3", None])
def test_calibrate_refuses_bad_cap(cap: object) -> None:
    with pytest.raises(InputError, match=r"^cap must be "):
        calibrate(1.0, DELTA, cap)  # type: ignore[arg-type]


def test_accounting_helpers_refuse_bad_arguments() -> None:
    with pytest.raises(InputError, match=r"^scale must be a non-negative finite number"):
        rho_of(-1.0, 1)
    with pytest.raises(InputError, match=r"^scale must be a non-negative finite number"):
        rho_of(math.nan, 1)
    with pytest.raises(InputError, match=r"^cap must be at least 0"):
        rho_of(1.0, -1)
    with pytest.raises(InputError, match=r"^rho must be a non-negative number"):
        epsilon_of(-0.1, DELTA)
    with pytest.raises(InputError, match=r"^rho must be a non-negative number"):
        epsilon_of(math.nan, DELTA)
    with pytest.raises(InputError, match=r"^delta must be a number in \(0, 1\)"):
        epsilon_of(0.1, 0.0)
    with pytest.raises(InputError, match=r"^rho must be a non-negative number"):
        compose([0.1, -0.1])


# --- the calibration ------------------------------------------------------------


def test_zero_cap_needs_no_noise() -> None:
    result = calibrate(1.0, DELTA, 0)
    assert result == NoiseCalibration(1.0, DELTA, 0, scale=0.0, rho=0.0, two_helper_std=0.0)


def test_fields_are_consistent() -> None:
    result = _calibrate(1.0, DELTA, 3)
    assert (result.epsilon, result.delta, result.cap) == (1.0, DELTA, 3)
    assert result.rho == rho_of(result.scale, 3)
    assert result.rho == pytest.approx(9 / (2 * result.scale**2), rel=1e-12)
    assert result.two_helper_std == pytest.approx(math.sqrt(2) * result.scale)


def test_calibrate_is_deterministic() -> None:
    assert calibrate(0.7, 1e-8, 5) == calibrate(0.7, 1e-8, 5)


def test_numpy_arguments_are_accepted() -> None:
    assert calibrate(np.float64(1.0), np.float32(DELTA), np.int64(1)).scale == pytest.approx(
        _calibrate(1.0, DELTA, 1).scale, rel=1e-6
    )


@pytest.mark.parametrize(("epsilon", "delta", "cap"), [(1.0, DELTA, 1), (0.1, 1e-9, 7), (10.0, 1e-3, 2)])
def test_scale_meets_the_target_and_a_smaller_one_does_not(epsilon: float, delta: float, cap: int) -> None:
    scale = _calibrate(epsilon, delta, cap).scale
    assert epsilon_of(rho_of(scale, cap), delta) <= epsilon
    assert epsilon_of(rho_of(scale * (1 - 1e-9), cap), delta) > epsilon
    assert epsilon_of(rho_of(math.nextafter(scale, 0), cap), delta) > epsilon


def test_opendp_own_chain_agrees() -> None:
    """OpenDP's fixed-δ chain on the sampler's measurement accepts the scale, and refuses a smaller one."""
    space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T="i64")

    def chain(scale: float) -> dp.Measurement:
        return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(dp.m.make_gaussian(*space, scale=scale)), DELTA)

    scale = _calibrate(1.0, DELTA, 4).scale
    assert chain(scale).check(4, (1.0, DELTA))
    assert not chain(scale * (1 - 1e-9)).check(4, (1.0, DELTA))


def test_larger_epsilon_gives_smaller_scale() -> None:
    scales = [_calibrate(epsilon, DELTA, 1).scale for epsilon in (0.1, 0.5, 1.0, 3.0, 10.0)]
    assert all(a > b > 0 for a, b in itertools.pairwise(scales))


def test_larger_delta_gives_smaller_scale() -> None:
    scales = [_calibrate(1.0, delta, 1).scale for delta in (1e-9, 1e-6, 1e-3)]
    assert all(a > b for a, b in itertools.pairwise(scales))


@pytest.mark.parametrize("cap", [2, 10, 1000])
def test_scale_is_proportional_to_cap(cap: int) -> None:
    assert _calibrate(1.0, DELTA, cap).scale == pytest.approx(cap * _calibrate(1.0, DELTA, 1).scale, rel=1e-9)


def test_a_known_value() -> None:
    """Pins the conversion: σ_h for (ε, δ, cap) = (1, 1e-6, 1) (docs/dp.md's table)."""
    assert _calibrate(1.0, DELTA, 1).scale == pytest.approx(4.530877117036446, rel=1e-9)


# --- rho_of, epsilon_of, compose ----------------------------------------------------


def test_rho_of_is_the_gaussian_zcdp() -> None:
    assert rho_of(2.0, 3) == pytest.approx(9 / 8, rel=1e-12)
    assert rho_of(2.0, 3) >= 9 / 8
    assert rho_of(0.0, 1) == math.inf
    assert rho_of(0.0, 0) == 0.0
    assert rho_of(5.0, 0) == 0.0


def test_epsilon_of_edges_and_monotonicity() -> None:
    assert epsilon_of(0.0, DELTA) == 0.0
    assert epsilon_of(math.inf, DELTA) == math.inf
    assert epsilon_of(1e9, DELTA) == math.inf  # OpenDP's conversion overflows: no claim
    values = [epsilon_of(rho, DELTA) for rho in (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0)]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert epsilon_of(0.1, 1e-9) > epsilon_of(0.1, 1e-6)


@pytest.mark.parametrize("rho", [1e-4, 0.01, 0.5, 3.0])
def test_epsilon_of_beats_the_bun_steinke_bound(rho: float) -> None:
    """OpenDP's conversion is the tighter one of CKS20; it must not exceed ρ + 2√(ρ ln(1/δ)) of BS16."""
    assert 0 < epsilon_of(rho, DELTA) <= rho + 2 * math.sqrt(rho * math.log(1 / DELTA))


def test_compose_adds_and_never_rounds_down() -> None:
    assert compose([]) == 0.0
    assert compose([0.25, 0.5]) == 0.75
    rhos = [0.1, 0.2, 0.3, 1e-17]
    total = compose(rhos)
    assert Fraction(total) >= sum(Fraction(rho) for rho in rhos)
    assert total == pytest.approx(0.6, rel=1e-15)
    assert compose([0.1, math.inf]) == math.inf
    assert compose(iter([0.5] * 4)) == 2.0


def test_composed_rho_gives_the_epochs_epsilon() -> None:
    """Two queries at (ε, δ) each: the ρ ledger's ε is below basic composition's 2ε."""
    one = _calibrate(1.0, DELTA, 1)
    assert epsilon_of(compose([one.rho, one.rho]), DELTA) < 2 * 1.0
