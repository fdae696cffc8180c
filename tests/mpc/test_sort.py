import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipa.errors import ProtocolError
from ipa.mpc.permute import move_rows
from ipa.mpc.sharing import share_arithmetic, share_boolean
from ipa.mpc.sort import sort
from ipa.mpc.testing import opened, run
from strategies import words


def sorted_payload(keys, width, digit_bits, payload, **kwargs):
    """Sort ``keys`` with ``payload`` in the test world; ``kwargs`` go to ``run`` (e.g. security)."""
    result = run(
        lambda ctx, k, *p: sort(ctx, k, list(p), digit_bits=digit_bits),
        share_boolean(keys, width),
        *payload,
        **kwargs,
    )
    return result, opened(result)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 48), st.integers(1, 5), st.data())
def test_sort_is_stable_and_applies_to_every_payload_column(width, digit_bits, data):
    keys = data.draw(words(width, max_rows=60))
    if len(keys) > 4 and data.draw(st.booleans()):
        keys[: len(keys) // 2] = keys[-1]  # many ties
    n = len(keys)
    rows = np.arange(n, dtype=np.uint64)
    tags = (rows * 5 + 1).astype(np.uint8) & 0x7F
    _, (out_rows, out_tags) = sorted_payload(
        keys, width, digit_bits, [share_arithmetic(rows), share_boolean(tags, 7)]
    )
    order = np.argsort(keys, kind="stable")
    assert out_rows.tolist() == rows[order].tolist()
    assert out_tags.tolist() == tags[order].tolist()


def test_maximum_keys_and_a_single_row():
    keys = np.array([2**40 - 1, 0, 2**40 - 1, 1], np.uint64)
    _, (out,) = sorted_payload(keys, 40, 3, [share_arithmetic(np.arange(4))])
    assert out.tolist() == [1, 3, 0, 2]
    _, (one,) = sorted_payload(keys[:1], 40, 3, [share_arithmetic(np.array([9]))])
    assert one.tolist() == [9]


def test_same_result_with_fresh_seeds_and_different_shares():
    keys = np.random.default_rng(3).integers(0, 2**20, 300, dtype=np.uint64)
    payload = share_arithmetic(np.arange(300))
    first, (a,) = sorted_payload(keys, 20, 3, [payload])
    second, (b,) = sorted_payload(keys, 20, 3, [payload])
    assert np.array_equal(a, b)
    assert not np.array_equal(first.outputs[0][0].left, second.outputs[0][0].left)


def test_bad_arguments():
    keys = share_boolean(np.arange(4), 8)
    with pytest.raises(ValueError, match="digit_bits"):
        run(lambda ctx, k: sort(ctx, k, [], digit_bits=0), keys)
    with pytest.raises(ValueError, match="as many rows"):
        run(lambda ctx, k, p: sort(ctx, k, [p]), keys, share_arithmetic(np.arange(3)))


def test_destinations_that_are_not_a_permutation_are_refused():
    dest = share_arithmetic(np.array([0, 0, 1]), np.uint32)
    with pytest.raises(ProtocolError, match="not a permutation"):
        run(lambda ctx, d: move_rows(ctx, d, []), dest)
