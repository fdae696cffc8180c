import numpy as np
import pytest
from hypothesis import given, settings

from ipa.errors import ProtocolError
from ipa.mpc.replicated import AShares
from ipa.mpc.sharing import reconstruct, share_arithmetic, share_boolean
from strategies import words


@given(words(64))
def test_arithmetic_round_trip_wraps_mod_2_64(values):
    assert np.array_equal(reconstruct(share_arithmetic(values, np.uint64)), values)


@given(words(32))
def test_arithmetic_round_trip_in_z_2_32(values):
    assert np.array_equal(reconstruct(share_arithmetic(values, np.uint32)), values)


@settings(max_examples=50)
@given(words(40))
def test_boolean_round_trip(values):
    shares = share_boolean(values, 40)
    assert shares[0].dtype == np.uint64
    assert np.array_equal(reconstruct(shares), values)


def test_values_wider_than_the_width_are_refused():
    with pytest.raises(ValueError, match="fit in 8 bits"):
        share_boolean(np.array([256]), 8)


def test_each_party_holds_the_next_partys_left_component():
    shares = share_arithmetic(np.arange(10), np.uint64)
    for i in range(3):
        assert np.array_equal(shares[i].right, shares[(i + 1) % 3].left)


def test_inconsistent_shares_are_detected():
    shares = share_arithmetic(np.arange(5), np.uint64)
    bad = AShares(shares[1].left + np.uint64(1), shares[1].right)
    with pytest.raises(ProtocolError, match="component 1 differs"):
        reconstruct([shares[0], bad, shares[2]])


def test_one_partys_shares_of_a_fixed_column_look_uniform():
    # Every row is the same secret; one party's pair must still be uniform bytes.
    shares = share_arithmetic(np.full(200_000, 7), np.uint32)
    for component in (shares[0].left, shares[0].right):
        counts = np.bincount(component.view(np.uint8), minlength=256)
        expected = component.nbytes / 256
        chi2 = ((counts - expected) ** 2 / expected).sum()
        assert chi2 < 400  # 255 degrees of freedom: p ≈ 1e-8 for a uniform source
        assert len(np.unique(component)) > 199_000
