"""The privacy budget in exact integer units of zCDP ``ρ``.

The ledger composes queries in ``ρ`` (zero-concentrated DP [BS16]): a query
whose per-helper noise gives ``ρ_q``-zCDP (``NoiseCalibration.rho``) costs
``ρ_q``, queries compose by adding their ``ρ``, and an epoch's budget is its
``(ε_E, δ)`` converted once, at the network's one ``δ``, into the largest
``ρ_E`` with ``epsilon_of(ρ_E, δ) ≤ ε_E``. Whatever queries a site runs in an
epoch, if their ``ρ`` add up to at most ``ρ_E`` their releases together are
``(ε_E, δ)``-DP. ``docs/dp.md`` says why ``ρ`` and not a sum of ``ε``.

Everything is stored and compared in integers, units of ``10⁻¹²`` of ``ρ``
(:data:`RHO_UNIT`): a charge is rounded up, a budget down, so rounding only
ever spends more privacy than the queries use, and there is no float slack
in admission. Every function here is deterministic, so the three helpers
compute the same units.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import opendp.prelude as dp

from ipa._checks import integer
from ipa.dp.calibration import epsilon_of, rho_of
from ipa.errors import InputError

__all__ = [
    "RHO_UNIT",
    "UNITS_PER_RHO",
    "EpochBudget",
    "epoch_budget_units",
    "epsilon_of_units",
    "noise_scale",
    "query_charge_units",
    "rho_units",
]

UNITS_PER_RHO = 10**12
RHO_UNIT = 1 / UNITS_PER_RHO
_MAX_UNITS = 2**62  # SQLite integers are signed 64-bit


def rho_units(rho: float) -> int:
    """``ρ`` in ledger units, rounded up (exactly: the float's rational value)."""
    if math.isinf(rho):
        return _MAX_UNITS
    return min(math.ceil(Fraction(rho) * UNITS_PER_RHO), _MAX_UNITS)


def _rho_of_units(units: int) -> float:
    """The float ``ρ`` of ``units``, rounded up (so it never understates the spend)."""
    exact = Fraction(units, UNITS_PER_RHO)
    value = float(exact)
    return math.nextafter(value, math.inf) if Fraction(value) < exact else value


def epsilon_of_units(units: int, delta: float) -> float:
    """The ``ε`` at ``delta`` of a spend of ``units`` (``inf`` past OpenDP's conversion range)."""
    return epsilon_of(_rho_of_units(units), delta)


def query_charge_units(epsilon: float, delta: float, cap: int) -> int:
    """The ledger charge of a query at ``(ε, δ)`` with per-user ``cap``: the ρ ``ε`` alone is worth.

    That is :func:`epoch_budget_units` of ``(ε, δ)``, the largest spend whose
    ``ε`` at ``δ`` is at most ``ε``; :func:`noise_scale` then calibrates the
    noise to at most this ρ, so the query is ``(ε, δ)``-DP and costs exactly
    its charge (a query asking for a whole epoch's ε fits it exactly). A
    query with ``cap == 0`` adds no noise and costs nothing. InputError for
    an ε too small to be worth one unit.
    """
    if integer("cap", cap, low=0) == 0:
        return 0
    units = epoch_budget_units(epsilon, delta)
    if units == 0:
        raise InputError(f"epsilon {epsilon!r} is too small for the ledger's units (1e-12 rho)")
    return units


def noise_scale(epsilon: float, delta: float, cap: int) -> float:
    """The per-helper discrete Gaussian scale of a query at ``(ε, δ)`` with per-user ``cap``.

    The smallest float ``σ_h`` whose ρ at ``cap`` (OpenDP's map, as
    :func:`~ipa.dp.calibration.rho_of`) is at most the query's charge
    (:func:`query_charge_units`), compared exactly. Within 10⁻⁹ (relative)
    of :func:`~ipa.dp.calibration.calibrate`'s scale, never below the one
    its charge needs.
    """
    return _scale_for_units(query_charge_units(epsilon, delta, cap), integer("cap", cap, low=0))


@functools.lru_cache(maxsize=256)
def _scale_for_units(units: int, cap: int) -> float:
    if cap == 0:
        return 0.0
    limit = Fraction(units, UNITS_PER_RHO)

    def within(scale: float) -> bool:
        rho = rho_of(scale, cap)
        return math.isfinite(rho) and Fraction(rho) <= limit

    return float(dp.binary_search(within, bounds=(0.0, None), T=float))


@functools.lru_cache(maxsize=64)
def epoch_budget_units(epsilon: float, delta: float) -> int:
    """The largest spend (in units) whose ``ε`` at ``delta`` is at most ``epsilon``.

    A search over integers on the monotone predicate
    ``epsilon_of_units(u, δ) <= ε``, keeping ``lo`` passing and ``hi``
    failing: it starts from the [BS16] bound ``ρ + 2√(ρ ln(1/δ)) = ε``
    (which the tighter conversion always passes), then probes just either
    side of the linear interpolation between ``lo`` and ``hi`` (about ten
    conversions instead of the eighty of a plain bisection; every probe
    only narrows the bracket, so the result is exact whatever the guess).
    Budgets past OpenDP's conversion range (``ρ`` about 10⁴) stop there.
    """

    def excess(units: int) -> float:
        return epsilon_of_units(units, delta) - epsilon

    if not excess(0) <= 0:
        return 0
    log = math.log(1 / delta)
    lo = max(math.floor((math.sqrt(log + epsilon) - math.sqrt(log)) ** 2 * UNITS_PER_RHO) - 1, 0)
    if not excess(lo) <= 0:
        lo = 0
    hi = max(2 * lo, 1)
    while hi < _MAX_UNITS and excess(hi) <= 0:
        lo, hi = hi, min(2 * hi, _MAX_UNITS)
    if excess(hi) <= 0:
        return hi
    f_lo, f_hi = excess(lo), excess(hi)
    while hi - lo > 1:
        if hi - lo <= 8 or not math.isfinite(f_hi):
            probes = [(lo + hi) // 2]
        else:
            guess = lo + (hi - lo) * (-f_lo) / (f_hi - f_lo)
            margin = max((hi - lo) // 1000, 1)
            probes = sorted({min(max(int(guess) + d, lo + 1), hi - 1) for d in (-margin, margin)})
        for probe in probes:
            value = excess(probe)
            if value <= 0 and probe > lo:
                lo, f_lo = probe, value
            elif value > 0 and probe < hi:
                hi, f_hi = probe, value
    return lo


@dataclass(frozen=True)
class EpochBudget:
    """A network's budget per (site, epoch): ``(ε, δ)`` and the ``ρ`` units it converts to."""

    epsilon: float
    delta: float
    units: int

    @classmethod
    def of(cls, epsilon: float, delta: float) -> EpochBudget:
        return cls(epsilon, delta, epoch_budget_units(epsilon, delta))

    def epsilon_of(self, units: int) -> float:
        """The ε at this budget's δ that ``units`` of ρ are worth."""
        return epsilon_of_units(units, self.delta)

    def describe(self, units: int) -> str:
        """``units`` for people: its ρ and the ε it alone is worth at δ."""
        rho = units / UNITS_PER_RHO
        return f"rho = {rho:.6g}, worth ε = {self.epsilon_of(units):.4g} alone at δ = {self.delta:g}"
