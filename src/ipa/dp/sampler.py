"""One helper's noise vector: ``size`` draws from the discrete Gaussian ``N_Z(0, σ_h²)``.

The sampler is OpenDP's ``make_gaussian`` over ``Vec<i64>`` with the L2
distance, invoked once on a zero vector: OpenDP samples the discrete Gaussian
exactly (the rejection sampler of Canonne, Kamath, Steinke 2020, from discrete
Laplace proposals, in exact rational arithmetic). Its random
bits come from OpenDP's ``fill_bytes``, which the PyPI wheel builds with the
``use-openssl`` feature, i.e. OpenSSL's ``RAND_bytes`` (a CSPRNG). This module
never uses numpy's or Python's ``random``.

:func:`ipa.dp.calibration.rho_of` is the privacy map of the very measurement
built here (:func:`_discrete_gaussian`), so the accounting and the sampling
cannot drift apart.

Cost: about 10 µs per sample on one core (100,000 samples at ``σ_h = 10`` take
about 1 s), single-threaded inside OpenDP.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import opendp.prelude as dp

from ipa._checks import integer
from ipa.errors import InputError

__all__ = ["sample_noise"]

dp.enable_features("contrib")  # make_gaussian is a "contrib" constructor

_SPACE = (dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T="i64"))


def _discrete_gaussian(scale: float) -> dp.Measurement:
    """OpenDP's discrete Gaussian on ``Vec<i64>``: L2 distance in, zCDP out, ``scale`` = σ."""
    return dp.m.make_gaussian(*_SPACE, scale=scale)


def _scale(value: object) -> float:
    """``value`` as a float in ``[0, ∞)``, or InputError naming ``scale``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise InputError(f"scale must be a non-negative finite number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise InputError(f"scale must be a non-negative finite number, got {value!r}")
    return number


def sample_noise(scale: float, size: int) -> np.ndarray:
    """``size`` independent discrete Gaussian samples ``N_Z(0, scale²)`` as int64.

    ``scale`` is the per-helper ``σ_h`` from :func:`ipa.dp.calibration.calibrate`
    (``NoiseCalibration.scale``); ``scale == 0`` (a zero cap) returns zeros.
    Each sample's mean is 0 and its variance is at most ``scale²`` (equal to it
    up to a term exponentially small in ``scale``). The randomness is OpenDP's
    CSPRNG; each call draws fresh samples and nothing is seeded.

    Raises InputError if ``scale`` is negative, NaN or infinite, or ``size`` is
    not a non-negative integer.
    """
    scale = _scale(scale)
    size = integer("size", size, low=0)
    if scale == 0 or size == 0:
        return np.zeros(size, dtype=np.int64)
    noisy = _discrete_gaussian(scale)(np.zeros(size, dtype=np.int64))
    return np.asarray(noisy, dtype=np.int64)
