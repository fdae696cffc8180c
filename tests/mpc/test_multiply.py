import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipa.mpc.multiply import and_, cross_terms, inner_product, multiply
from ipa.mpc.replicated import AShares
from ipa.mpc.sharing import share_arithmetic, share_boolean
from ipa.mpc.testing import opened, run
from strategies import words

SETTINGS = settings(max_examples=40, deadline=None)


@SETTINGS
@given(st.data(), st.sampled_from([32, 64]))
def test_multiply_equals_the_wrapping_product(data, bits):
    x = data.draw(words(bits))
    y = (x[::-1] * x[0] + x) if len(x) else x  # wraps for large values
    dtype = x.dtype
    result = run(multiply, share_arithmetic(x, dtype), share_arithmetic(y, dtype))
    assert np.array_equal(opened(result), x * y)


@SETTINGS
@given(st.integers(1, 64), st.data())
def test_and_equals_bitwise_and(width, data):
    x = data.draw(words(width))
    y = np.flip(x) ^ (x >> 1)
    result = run(and_, share_boolean(x, width), share_boolean(y, width))
    assert np.array_equal(opened(result), x & y)


def test_multiply_costs_one_round_and_one_word_per_element():
    x = np.arange(1000, dtype=np.uint32).reshape(2, 500)
    result = run(multiply, share_arithmetic(x, np.uint32), share_arithmetic(x, np.uint32))
    assert np.array_equal(opened(result), x * x)
    assert result.rounds == 1
    assert result.bytes_sent() == [4000] * 3


def test_inner_product_sums_over_an_axis_at_the_cost_of_one_output():
    x = np.arange(3 * 400, dtype=np.uint64).reshape(3, 400) * np.uint64(2**40)
    y = x + np.uint64(5)
    result = run(inner_product, share_arithmetic(x), share_arithmetic(y))
    assert np.array_equal(opened(result), (x * y).sum(0, dtype=np.uint64))
    assert result.bytes_sent() == [400 * 8] * 3


def test_cross_terms_with_fixed_masks_sum_to_the_product():
    x, y = share_arithmetic(np.array([3, 2**63]), np.uint64), share_arithmetic(np.array([5, 2]))
    masks = [np.array([1, 2], np.uint64), np.array([10, 20], np.uint64)]
    masks.append(-(masks[0] + masks[1]))
    z = sum(cross_terms(x[i], y[i], masks[i]) for i in range(3))
    assert list(z) == [15, 0]
    assert isinstance(x[0], AShares)


@SETTINGS
@given(st.data(), st.integers(1, 3))
def test_products_in_row_blocks_equal_plaintext(data, k):
    """Row blocks of 7 elements, so that short inputs cross several block boundaries."""
    from ipa.mpc import multiply as module

    x = data.draw(words(64)).reshape(1, -1).repeat(k, axis=0)
    x[1:] ^= np.uint64(0x9E3779B97F4A7C15)  # stacked rows that differ
    y = x[:, ::-1] * np.uint64(3) + np.uint64(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "_BLOCK", 7)
        product = run(multiply, share_arithmetic(x), share_arithmetic(y))
        conjunction = run(and_, share_boolean(x, 64), share_boolean(y, 64))
        inner = run(lambda c, a, b: inner_product(c, a, b, axis=0), share_arithmetic(x), share_arithmetic(y))
    assert np.array_equal(opened(product), x * y)
    assert np.array_equal(opened(conjunction), x & y)
    assert np.array_equal(opened(inner), (x * y).sum(axis=0, dtype=np.uint64))


@SETTINGS
@given(st.data(), st.integers(1, 4))
def test_stacked_products_equal_products_of_stacks(data, k):
    from ipa.mpc.multiply import and_stacked, multiply_stacked

    x = data.draw(words(64))
    xs = [x ^ np.uint64(j) for j in range(k)]
    ys = [x[::-1] + np.uint64(j) for j in range(k)]

    arith = run(
        lambda ctx, a, b: multiply_stacked(ctx, a, b),
        [list(p) for p in zip(*(share_arithmetic(v) for v in xs), strict=True)],
        [list(p) for p in zip(*(share_arithmetic(v) for v in ys), strict=True)],
    )
    assert np.array_equal(opened(arith), np.stack(xs) * np.stack(ys))
    boolean = run(
        lambda ctx, a, b: and_stacked(ctx, a, b),
        [list(p) for p in zip(*(share_boolean(v, 64) for v in xs), strict=True)],
        [list(p) for p in zip(*(share_boolean(v, 64) for v in ys), strict=True)],
    )
    assert np.array_equal(opened(boolean), np.stack(xs) & np.stack(ys))


def test_stacked_operands_must_agree():
    from ipa.mpc.multiply import multiply_stacked

    a32, a64 = share_arithmetic(np.arange(4), np.uint32), share_arithmetic(np.arange(4))
    with pytest.raises(ValueError, match="one shape and one dtype"):
        run(lambda ctx, a, b: multiply_stacked(ctx, [a], [b]), a32, a64)
    with pytest.raises(ValueError, match="as many"):
        run(lambda ctx, a, b: multiply_stacked(ctx, [a, a], [b]), a64, a64)


def test_stacked_products_are_recorded_and_verified_in_malicious_mode():
    from ipa.mpc.checkpoint import CHECKPOINT_STEPS, checkpoint
    from ipa.mpc.multiply import and_stacked, multiply_stacked
    from ipa.mpc.step import Steps

    steps = Steps("stacked", "m", "b", check=CHECKPOINT_STEPS)
    v = np.arange(1, 41, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)

    def protocol(ctx, a, b):
        ctx = ctx.enter(steps)
        out = [multiply_stacked(ctx.narrow("m"), [a, a], [a, a]), and_stacked(ctx.narrow("b"), [b], [b])]
        assert ctx.verifier is not None and ctx.verifier.pending == 2
        checkpoint(ctx.narrow("check"))
        return out

    result = run(protocol, share_arithmetic(v), share_boolean(v, 64), security="malicious")
    product, conjunction = opened(result)
    assert np.array_equal(product, np.stack([v * v, v * v]))
    assert np.array_equal(conjunction, v[None])
