"""The ρ ledger's units: charges round up, budgets round down, exactly; epochs compose in ρ."""

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipa.dp import calibrate, epsilon_of, rho_of
from ipa.dp.accounting import (
    UNITS_PER_RHO,
    EpochBudget,
    epoch_budget_units,
    epsilon_of_units,
    noise_scale,
    query_charge_units,
    rho_units,
)
from ipa.errors import InputError


@given(st.floats(min_value=0, max_value=1e4, allow_nan=False))
def test_a_charge_never_understates_rho(rho):
    units = rho_units(rho)
    assert Fraction(units, UNITS_PER_RHO) >= Fraction(rho)
    assert Fraction(units - 1, UNITS_PER_RHO) < Fraction(rho)


def test_the_epoch_budget_is_the_largest_spend_whose_epsilon_fits():
    units = epoch_budget_units(10.0, 1e-9)
    assert epsilon_of_units(units, 1e-9) <= 10.0 < epsilon_of_units(units + 1, 1e-9)
    assert units / UNITS_PER_RHO == pytest.approx(calibrate(10.0, 1e-9, 1).rho, rel=1e-6)


@settings(max_examples=5, deadline=None)
@given(st.sampled_from([0.1, 0.5, 1.0, 3.0]), st.integers(1, 1000))
def test_a_query_costs_what_its_epsilon_alone_is_worth_and_its_noise_stays_within_it(epsilon, cap):
    charge = query_charge_units(epsilon, 1e-9, cap)
    assert charge == epoch_budget_units(epsilon, 1e-9) > 0  # a query of a whole epoch's ε fits exactly
    scale = noise_scale(epsilon, 1e-9, cap)
    assert Fraction(rho_of(scale, cap)) <= Fraction(charge, UNITS_PER_RHO)
    assert Fraction(rho_of(math.nextafter(scale, 0), cap)) > Fraction(charge, UNITS_PER_RHO)
    assert epsilon_of(rho_of(scale, cap), 1e-9) <= epsilon
    assert scale == pytest.approx(calibrate(epsilon, 1e-9, cap).scale, rel=1e-8)


def test_tiny_epsilons_are_refused_not_rounded_to_free():
    with pytest.raises(InputError, match="too small"):
        query_charge_units(1e-9, 1e-9, 10)


def test_composing_in_rho_admits_more_queries_than_summing_epsilon():
    """100 queries at ε = 0.1 fit a budget of 10 by ε-sum; in ρ the same budget takes far more."""
    budget = epoch_budget_units(10.0, 1e-9)
    charge = query_charge_units(0.1, 1e-9, 20)
    assert budget // charge > 50 * 100
    # The noise a site can afford per query at 100 queries per epoch: ε of ρ_E/100 alone.
    per_query = epsilon_of_units(budget // 100, 1e-9)
    assert per_query > 0.8  # vs ε = 0.1 under the ε-sum: about 8x less noise
    sigma_rho, sigma_eps = calibrate(per_query, 1e-9, 20).scale, calibrate(0.1, 1e-9, 20).scale
    assert sigma_eps / sigma_rho > 7


def test_the_whole_epoch_is_what_its_rho_converts_to():
    """Spending the budget in 37 queries of equal charge stays within (ε_E, δ)."""
    budget = EpochBudget.of(2.0, 1e-9)
    charge = budget.units // 37
    assert epsilon_of(37 * charge / UNITS_PER_RHO, 1e-9) <= 2.0
    assert budget.epsilon_of(budget.units) <= 2.0
    assert "worth ε = 2 alone at δ = 1e-09" in budget.describe(budget.units)


def test_large_budgets_convert_within_the_units():
    units = epoch_budget_units(1e3, 1e-9)
    assert 0 < units < 2**62 and math.isfinite(epsilon_of_units(units, 1e-9))


def test_a_query_without_sensitivity_costs_nothing():
    assert query_charge_units(1.0, 1e-9, 0) == 0
