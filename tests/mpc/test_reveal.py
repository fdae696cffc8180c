import numpy as np
from hypothesis import given, settings

from ipa.mpc.reveal import reveal, reveal_to_outside
from ipa.mpc.sharing import reconstruct, share_arithmetic, share_boolean
from ipa.mpc.testing import run
from strategies import words


@settings(max_examples=30, deadline=None)
@given(words(64))
def test_every_helper_learns_the_value(values):
    result = run(reveal, share_arithmetic(values))
    assert all(np.array_equal(o, values) for o in result.outputs)
    assert result.bytes_sent() == [8 * len(values)] * 3


def test_boolean_reveal():
    values = np.array([0, 1, 2**40 - 1], np.uint64)
    result = run(reveal, share_boolean(values, 40))
    assert all(np.array_equal(o, values) for o in result.outputs)


def test_reveal_to_outside_sends_nothing_between_helpers():
    values = np.array([5, 6, 7], np.uint32)
    result = run(lambda ctx, x: reveal_to_outside(x), share_arithmetic(values, np.uint32))
    pairs = result.outputs
    assert result.bytes_sent() == [0, 0, 0]
    from ipa.mpc.replicated import AShares

    assert np.array_equal(reconstruct([AShares(*p) for p in pairs]), values)
