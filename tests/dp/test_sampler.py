"""The noise sampler: shape, dtype, zero scale, moments, and no numpy randomness."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ipa.dp import sample_noise
from ipa.errors import InputError


def test_shape_and_dtype() -> None:
    noise = sample_noise(3.0, 17)
    assert noise.shape == (17,)
    assert noise.dtype == np.int64


def test_empty() -> None:
    noise = sample_noise(3.0, 0)
    assert noise.shape == (0,)
    assert noise.dtype == np.int64


def test_zero_scale_gives_zeros() -> None:
    noise = sample_noise(0.0, 5)
    assert noise.dtype == np.int64
    assert np.array_equal(noise, np.zeros(5, dtype=np.int64))


def test_numpy_integer_size_is_accepted() -> None:
    assert sample_noise(1.0, np.int64(4)).shape == (4,)


@pytest.mark.parametrize("scale", [-1.0, math.nan, math.inf, True, "1", None])
def test_refuses_bad_scale(scale: object) -> None:
    with pytest.raises(InputError, match=r"^scale must be a non-negative finite number, got "):
        sample_noise(scale, 3)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [-1, 2.0, True, "3", None])
def test_refuses_bad_size(size: object) -> None:
    with pytest.raises(InputError, match=r"^size must be "):
        sample_noise(1.0, size)  # type: ignore[arg-type]


def test_mean_and_variance() -> None:
    """100,000 draws at σ = 10: mean within 0.2 (≈ 6 standard errors), variance within 5 % (≈ 11 s.e.)."""
    sigma, n = 10.0, 100_000
    noise = sample_noise(sigma, n).astype(np.float64)
    assert abs(noise.mean()) < 0.2
    assert abs(noise.var() / sigma**2 - 1) < 0.05
    assert np.array_equal(noise, np.round(noise))
    assert abs(noise).max() < 10 * sigma  # P(|X| ≥ 10σ) < 1e-20 per draw


def test_calls_draw_fresh_noise() -> None:
    assert not np.array_equal(sample_noise(100.0, 64), sample_noise(100.0, 64))


def test_never_uses_numpy_randomness(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("numpy randomness used")

    for name in ("default_rng", "random", "normal", "randint", "integers", "RandomState", "Generator"):
        monkeypatch.setattr(np.random, name, refuse, raising=False)
    assert sample_noise(5.0, 100).shape == (100,)
