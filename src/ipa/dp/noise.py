"""What a released result says about its noise: mechanism, standard deviation, 95 % interval.

A released sum is ``true sum + z_1 + z_2 + z_3``, one discrete Gaussian
``N_Z(0, σ_i²)`` from each helper (``σ_i`` the scale helper ``i`` states).
:func:`noise_statement` gives, per sum:

- ``std``: the standard deviation of ``z_1 + z_2 + z_3``, ``√(Σ Var N_Z(0, σ_i²))``.
  The variance of a discrete Gaussian is at most ``σ²`` and equal to it up to
  ``e^{-2π²σ²}``-small terms; for ``σ ≤ 50`` it is computed from the pmf;
- ``ci95``: the half-width ``t`` (an integer) of the interval
  ``[released − t, released + t]``, which holds the true sum with probability
  at least 95 %. For small scales ``t`` is the exact quantile of
  ``|z_1 + z_2 + z_3|`` (the three pmfs convolved); for ``σ_i > 50`` the sum
  is normal up to terms below 10⁻¹⁰⁰⁰⁰ and ``t = ⌈1.96·std⌉``.

A noised sum can be negative or exceed any true value: the noise is
symmetric and unbounded; the interval is what to read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DISCRETE_GAUSSIAN", "NO_NOISE", "NoiseStatement", "noise_statement"]

DISCRETE_GAUSSIAN = "discrete_gaussian"
NO_NOISE = "none"
_EXACT_BELOW = 50.0  # per-helper scales up to this are handled with exact pmfs
_Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile


@dataclass(frozen=True)
class NoiseStatement:
    """The noise of one release: each sum's std and 95 % half-width (equal here for all sums)."""

    mechanism: str
    scales: tuple[float, ...]  # each helper's stated scale σ_i
    std: tuple[float, ...]
    ci95: tuple[int, ...]

    def to_json(self) -> dict[str, object]:
        """``{"mechanism", "std": [...], "ci95": [...]}`` for the command line's JSON."""
        return {"mechanism": self.mechanism, "std": list(self.std), "ci95": list(self.ci95)}


def _pmf(scale: float) -> np.ndarray:
    """The pmf of N_Z(0, scale²) on −K..K, K = ⌈12·scale⌉ + 1 (the rest has mass below 10⁻³⁰)."""
    if scale == 0:
        return np.ones(1)
    k = math.ceil(12 * scale) + 1
    x = np.arange(-k, k + 1, dtype=np.float64)
    weights = np.exp(-(x**2) / (2 * scale**2))
    return weights / weights.sum()


def _variance(scale: float) -> float:
    if scale > _EXACT_BELOW:
        return scale * scale
    pmf = _pmf(scale)
    x = np.arange(len(pmf), dtype=np.float64) - len(pmf) // 2
    return float((pmf * x * x).sum())


def _half_width(scales: Sequence[float], std: float) -> int:
    """The smallest integer t with P(|z_1 + z_2 + z_3| ≤ t) ≥ 0.95."""
    if max(scales, default=0.0) > _EXACT_BELOW:
        return math.ceil(_Z95 * std)
    total = np.ones(1)
    for scale in scales:
        total = np.convolve(total, _pmf(scale))
    centre = len(total) // 2
    # P(|E| <= t) = sum of pmf over centre-t .. centre+t, by t.
    folded = np.concatenate(([total[centre]], total[centre + 1 :] + total[centre - 1 :: -1]))
    return int(np.searchsorted(np.cumsum(folded), 0.95 - 1e-12))


def noise_statement(
    scales: Sequence[float], num_sums: int, mechanism: str = DISCRETE_GAUSSIAN
) -> NoiseStatement:
    """The noise of ``num_sums`` released sums, each carrying one discrete Gaussian of every scale.

    ``scales`` are the helpers' stated per-helper scales; all zero (or
    ``mechanism == NO_NOISE``) means an exact release: std 0, half-width 0.
    """
    scales = tuple(float(s) for s in scales)
    if any(not math.isfinite(s) or s < 0 for s in scales):
        raise ValueError("noise scales must be finite and non-negative")
    if mechanism == NO_NOISE or not any(scales):
        return NoiseStatement(NO_NOISE, scales, (0.0,) * num_sums, (0,) * num_sums)
    std = math.sqrt(sum(_variance(s) for s in scales))
    half = _half_width(scales, std)
    return NoiseStatement(mechanism, scales, (std,) * num_sums, (half,) * num_sums)
