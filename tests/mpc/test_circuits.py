"""Adder, comparison and conversions against plaintext on random words of every width."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ipa.mpc.adder import add, carry_out, top_bit
from ipa.mpc.compare import equal, less_than
from ipa.mpc.convert import arith_to_bool, bit_to_arith, bool_to_arith, sign_bit
from ipa.mpc.sharing import share_arithmetic, share_boolean
from ipa.mpc.testing import opened, run
from strategies import words

SETTINGS = settings(max_examples=30, deadline=None)


def pair(data, width):
    x = data.draw(words(width))
    # Half the rows equal, the rest shifted: exercises ties and both orders.
    y = x.copy()
    y[::2] = np.roll(x, 1)[::2]
    return x, y


@SETTINGS
@given(st.integers(1, 64), st.data())
def test_add_wraps_at_the_width(width, data):
    x, y = pair(data, width)
    top = (1 << width) - 1
    result = run(add, share_boolean(x, width), share_boolean(y, width))
    expected = [(int(a) + int(b)) & top for a, b in zip(x, y, strict=True)]
    assert opened(result).tolist() == expected


def test_add_carries_through_every_bit_at_every_width():
    """The longest carry chains (all ones plus one, a propagate run ending in a generate) and
    none (x plus its complement), where the Brent–Kung tree's blocks meet."""
    for width in range(1, 65):
        top = (1 << width) - 1
        x = [top, top, 0, top, 1 << (width - 1), 0b0101 & top, top >> 1]
        y = [1, top, 0, 0, 1 << (width - 1), 0b1011 & top, 1]
        x += [a ^ top for a in x]
        y += y
        result = run(
            add, share_boolean(np.array(x, np.uint64), width), share_boolean(np.array(y, np.uint64), width)
        )
        assert opened(result).tolist() == [(a + b) & top for a, b in zip(x, y, strict=True)], width


@SETTINGS
@given(st.integers(1, 64), st.data())
def test_less_than_and_equal(width, data):
    x, y = pair(data, width)
    sx, sy = share_boolean(x, width), share_boolean(y, width)
    assert opened(run(less_than, sx, sy)).tolist() == (x < y).astype(int).tolist()
    assert opened(run(equal, sx, sy)).tolist() == (x == y).astype(int).tolist()


def test_less_than_costs_what_its_docstring_says():
    x = np.arange(100, dtype=np.uint64)
    result = run(less_than, share_boolean(x, 40), share_boolean(x[::-1].copy(), 40))
    assert result.rounds == 1 + 6  # 1 + ⌈log2 40⌉
    assert max(result.bytes_sent()) <= 2 * 6 * 8 * 100


@SETTINGS
@given(st.data(), st.sampled_from([np.uint32, np.uint64]))
def test_bit_to_arith(data, dtype):
    bits = data.draw(words(1))
    result = run(lambda ctx, b: bit_to_arith(ctx, b, dtype), share_boolean(bits, 1))
    assert opened(result).tolist() == bits.tolist()
    assert opened(result).dtype == dtype


@SETTINGS
@given(st.data(), st.sampled_from([32, 64]))
def test_arith_to_bool(data, bits):
    x = data.draw(words(bits))
    result = run(arith_to_bool, share_arithmetic(x, x.dtype))
    assert opened(result).tolist() == x.tolist()


@SETTINGS
@given(st.data(), st.sampled_from([32, 64]))
def test_sign_bit(data, bits):
    dtype = np.dtype(f"uint{bits}")
    top = 1 << (bits - 1)
    edges = np.array([0, 1, top - 1, top, top + 1, 2 * top - 1], np.uint64)  # each side of the sign
    x = np.concatenate([edges, data.draw(words(bits))]).astype(dtype)
    result = run(sign_bit, share_arithmetic(x, dtype))
    assert opened(result).tolist() == (x >> (bits - 1)).tolist()


@SETTINGS
@given(st.data(), st.sampled_from([1, 2, 3, 4, 8, 16, 33, 63, 64]))
def test_carry_out_and_top_bit(data, width):
    a = data.draw(words(width))
    b = np.resize(data.draw(words(width)), len(a))
    total = a.astype(object) + b.astype(object)
    g, p = share_boolean(a & b, width), share_boolean(a ^ b, width)
    assert opened(run(carry_out, g, p)).tolist() == (total >> width).tolist()
    if width >= 2:
        top = opened(run(top_bit, share_boolean(a, width), share_boolean(b, width)))
        assert top.tolist() == ((total >> (width - 1)) & 1).tolist()


@SETTINGS
@given(st.integers(1, 64), st.data())
def test_bool_to_arith(width, data):
    x = data.draw(words(width))
    dtype = np.uint32 if width <= 32 and data.draw(st.booleans()) else np.uint64
    result = run(lambda ctx, v: bool_to_arith(ctx, v, dtype), share_boolean(x, width))
    assert opened(result).tolist() == x.tolist()
