import numpy as np

from ipa.mpc.input import input_from, input_from_each
from ipa.mpc.sharing import reconstruct
from ipa.mpc.testing import run


def test_each_partys_input_is_shared_and_costs_one_word():
    values = [np.array([1, 2**64 - 1, 5], np.uint64) * np.uint64(i + 1) for i in range(3)]
    result = run(lambda ctx, v: input_from_each(ctx, v), [values[0], values[1], values[2]])
    for owner in range(3):
        assert np.array_equal(reconstruct([out[owner] for out in result.outputs]), values[owner])
    assert result.rounds == 1 and result.bytes_sent() == [24, 24, 24]


def test_what_the_next_party_receives_is_masked():
    values = [np.zeros(1000, np.uint32)] * 3
    result = run(lambda ctx, v: input_from_each(ctx, v), values)
    received = result.outputs[1][0].left  # H2's copy of component 1 of H1's (all-zero) input
    assert len(np.unique(received)) > 990


def test_one_owner_shares_its_values():
    secret = np.array([3, 2**32 - 1, 0], np.uint32)
    for owner in range(3):
        result = run(
            lambda ctx, v, o=owner: input_from(ctx, o, v),
            [secret if i == owner else 0 * secret for i in range(3)],
        )
        assert np.array_equal(reconstruct(result.outputs), secret)
        assert result.bytes_sent() == [12 if i == owner else 0 for i in range(3)]
