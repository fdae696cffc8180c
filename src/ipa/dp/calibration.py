"""Per-helper discrete Gaussian scale for an ``(ε, δ)`` query, and zCDP accounting.

Mechanism: the released vector is ``sums + z_1 + z_2 + z_3`` with each helper's
``z_i ~ N_Z(0, σ_h²)^B`` (:mod:`ipa.dp.sampler`). Neighbouring inputs differ by
adding or removing one user, whose contributions are non-negative integers
adding up to at most ``cap``: the L2 sensitivity of ``sums`` is ``cap``.

Analysis (conservative, see ``docs/dp.md``): ONE helper's noise alone must give
the guarantee, since a corrupt helper can subtract its own ``z_i`` and the
third helper's independent noise is post-processing. The discrete Gaussian with
scale ``σ`` and L2 sensitivity ``Δ`` is ``Δ²/(2σ²)``-zCDP (Canonne, Kamath,
Steinke 2020, "The Discrete Gaussian for Differential Privacy" [CKS20]: the
same ρ as the continuous Gaussian, coordinates adding up; zCDP is from Bun and
Steinke 2016 [BS16]). ``ρ``-zCDP implies ``(ε, δ)``-DP for
the ``ε`` of OpenDP's ``make_zCDP_to_approxDP`` profile (the CKS20 optimal
conversion), which is smaller than the ``ρ + 2√(ρ ln(1/δ))`` of [BS16].

OpenDP calls: ``make_gaussian(vector_domain(atom_domain(T="i64")),
l2_distance(T="i64"), scale).map(cap)`` for ``ρ``;
``make_zCDP_to_approxDP(make_gaussian(atom_domain(T=float, nan=False),
absolute_distance(T=float), scale=1.0)).map(d).epsilon(δ)`` with
``d ≥ √(2ρ)`` for ``ε``; ``binary_search`` for the smallest passing ``σ_h``.

Budgets: the helpers' ledgers account in ``ρ`` (:mod:`ipa.dp.accounting`):
queries of ``ρ_i`` compose to ``compose(ρ_i) = Σ ρ_i``-zCDP [BS16], and
``epsilon_of(Σ ρ_i, δ)`` is the epoch's ``ε`` at the network's one ``δ``;
that is tighter than summing ``ε`` (and ``δ``) once several queries share an
epoch.

Every function here is deterministic (no randomness) and rounds towards more
privacy loss: a returned ``ρ`` or ``ε`` never understates the true one.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import opendp.prelude as dp

from ipa._checks import integer
from ipa.dp.sampler import _discrete_gaussian, _scale
from ipa.errors import InputError

__all__ = ["NoiseCalibration", "calibrate", "compose", "epsilon_of", "rho_of"]

# A unit-scale Gaussian whose privacy map at distance d is d²/2 (rounded up):
# fed d = √(2ρ) (rounded up) it is a ρ-zCDP measurement, and the cast turns
# that ρ into OpenDP's privacy profile δ(ε). Only its map is ever used.
_UNIT_PROFILE = dp.c.make_zCDP_to_approxDP(
    dp.m.make_gaussian(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), scale=1.0)
)


@dataclass(frozen=True)
class NoiseCalibration:
    """The noise one query needs, from :func:`calibrate`.

    - ``epsilon``, ``delta``: the target ``(ε, δ)`` of the released vector.
    - ``cap``: per-user contribution cap, the L1 and L2 sensitivity of the B sums.
    - ``scale``: the per-helper discrete Gaussian scale ``σ_h`` (0 when ``cap == 0``).
    - ``rho``: zCDP of ONE helper's noise at this scale and cap (the conservative
      analysis): ``cap²/(2σ_h²)``, rounded up.
    - ``two_helper_std``: the per-sum noise standard deviation that an attacker
      who knows one helper's noise still faces: ``√2·σ_h``, an upper bound
      (a discrete Gaussian's variance is at most ``σ_h²``).
    """

    epsilon: float
    delta: float
    cap: int
    scale: float  # per-helper discrete Gaussian scale
    rho: float  # zCDP of one helper's noise (conservative analysis)
    two_helper_std: float  # std of the noise an attacker who knows one helper's noise still faces


def _positive_finite(name: str, value: object) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a positive finite number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise InputError(f"{name} must be a positive finite number, got {value!r}")
    return number


def _delta(value: object) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise InputError(f"delta must be a number in (0, 1), got {value!r}")
    number = float(value)
    if not 0 < number < 1:  # also refuses NaN
        raise InputError(f"delta must be a number in (0, 1), got {value!r}")
    return number


def _rho(value: object) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise InputError(f"rho must be a non-negative number, got {value!r}")
    number = float(value)
    if not number >= 0:  # also refuses NaN; +inf (no privacy) is allowed
        raise InputError(f"rho must be a non-negative number, got {value!r}")
    return number


def rho_of(scale: float, cap: int) -> float:
    """zCDP ``ρ`` of one discrete Gaussian noise vector of ``scale`` for L2 sensitivity ``cap``.

    OpenDP's privacy map of the sampler's measurement: ``cap²/(2·scale²)``,
    rounded up. ``cap == 0`` gives 0 (nothing to hide); ``scale == 0`` with
    ``cap > 0`` gives ``inf`` (no privacy). Raises InputError for a negative or
    non-finite ``scale`` or a negative or non-integer ``cap``.
    """
    scale = _scale(scale)
    cap = integer("cap", cap, low=0)
    if cap == 0:
        return 0.0
    if scale == 0:
        return math.inf
    return float(_discrete_gaussian(scale).map(cap))


def epsilon_of(rho: float, delta: float) -> float:
    """The ``ε`` for which ``ρ``-zCDP implies ``(ε, δ)``-DP, by OpenDP's conversion.

    ``rho == 0`` gives 0; ``rho == inf`` gives ``inf``, and so does a ``ρ`` so
    large (about 10⁴ and up) that OpenDP's conversion overflows. The result is
    never below the exact conversion of ``rho`` (``√(2ρ)`` is rounded up before
    OpenDP's map squares it, again rounding up). Raises InputError for a
    negative or NaN ``rho`` or a ``delta`` outside (0, 1).
    """
    rho = _rho(rho)
    delta = _delta(delta)
    if rho == 0:
        return 0.0
    if math.isinf(rho):
        return math.inf
    distance = math.nextafter(math.sqrt(2 * rho), math.inf)
    try:
        return float(_UNIT_PROFILE.map(distance).epsilon(delta))
    except dp.OpenDPException:
        return math.inf  # the conversion overflowed: claim no guarantee


def compose(rhos: Iterable[float]) -> float:
    """zCDP of running mechanisms of ``rhos`` in sequence: their sum [BS16], rounded up.

    Adaptive composition of zCDP is additive, so this is the ``ρ`` to hand to
    :func:`epsilon_of` for a whole epoch. An empty iterable gives 0. Raises
    InputError if any ``ρ`` is negative or NaN.
    """
    values = [_rho(rho) for rho in rhos]
    if any(math.isinf(value) for value in values):
        return math.inf
    exact = sum((Fraction(value) for value in values), Fraction(0))
    total = float(exact)
    if Fraction(total) < exact:
        total = math.nextafter(total, math.inf)
    return total


def calibrate(epsilon: float, delta: float, cap: int) -> NoiseCalibration:
    """The smallest per-helper scale ``σ_h`` for which one helper's noise gives ``(ε, δ)``-DP.

    Bisection (OpenDP's ``binary_search``) over ``σ_h`` of the predicate
    ``epsilon_of(rho_of(σ_h, cap), delta) <= epsilon``, which is monotone in
    ``σ_h``; the result is the smallest float that passes, so the returned
    scale meets the target and the next smaller float does not. Deterministic:
    the same arguments give the same result. ``σ_h`` is proportional to
    ``cap`` and decreases as ``epsilon`` or ``delta`` grows.

    ``cap == 0`` means zero sensitivity: no noise is needed, and the result has
    ``scale == rho == two_helper_std == 0``.

    About 0.2 s (one OpenDP privacy map and conversion per bisection step).

    Raises InputError if ``epsilon`` is not a positive finite number, ``delta``
    is not in (0, 1), or ``cap`` is not a non-negative integer; also when the
    scale falls outside OpenDP's search range (only for absurd parameters).
    """
    return _calibrate(_positive_finite("epsilon", epsilon), _delta(delta), integer("cap", cap, low=0))


@functools.lru_cache(maxsize=256)
def _calibrate(epsilon: float, delta: float, cap: int) -> NoiseCalibration:
    """:func:`calibrate` of checked arguments, remembered (a helper calibrates each query twice)."""
    if cap == 0:
        return NoiseCalibration(epsilon, delta, cap, scale=0.0, rho=0.0, two_helper_std=0.0)

    def meets_target(scale: float) -> bool:
        return epsilon_of(rho_of(scale, cap), delta) <= epsilon

    try:
        scale = float(dp.binary_search(meets_target, bounds=(0.0, None), T=float))
    except ValueError as error:
        raise InputError(
            f"cannot calibrate noise for epsilon={epsilon!r}, delta={delta!r}, cap={cap}: {error}"
        ) from None
    return NoiseCalibration(
        epsilon,
        delta,
        cap,
        scale=scale,
        rho=rho_of(scale, cap),
        two_helper_std=math.sqrt(2) * scale,
    )
