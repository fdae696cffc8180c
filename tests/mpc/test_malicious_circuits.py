"""Malicious mode of the conversions and circuits: plaintext equality and a tamper sweep of each.

They verify by composition (every AND and multiplication is recorded and
checked at the checkpoint); ``bit_to_arith`` computes b_0 ⊕ b_1 ⊕ b_2 from the
components instead of taking H1's input, and ``bool_to_arith``'s opening to
H1 and H3 is hash-confirmed.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipa.errors import MaliciousBehaviourError
from ipa.mpc.adder import ADD_STEPS, add
from ipa.mpc.checkpoint import CHECKPOINT_STEPS, checkpoint
from ipa.mpc.compare import EQUAL_STEPS, LESS_THAN_STEPS, equal, less_than
from ipa.mpc.convert import (
    ARITH_TO_BOOL_STEPS,
    BIT_TO_ARITH_STEPS,
    BOOL_TO_ARITH_STEPS,
    SIGN_BIT_STEPS,
    arith_to_bool,
    bit_to_arith,
    bool_to_arith,
    sign_bit,
)
from ipa.mpc.memory import Tamper
from ipa.mpc.one_hot import ONE_HOT_STEPS, one_hot
from ipa.mpc.sharing import share_arithmetic, share_boolean
from ipa.mpc.step import Steps
from ipa.mpc.testing import check_cost, opened, run
from strategies import words

RNG = np.random.default_rng(29)


def verified(block, steps, **kwargs):
    """A protocol: ``block`` in its declared tree, then a checkpoint; returns the (shared) output."""
    tree = Steps(f"verified_{steps.name}", block=steps, check=CHECKPOINT_STEPS)

    def protocol(ctx, *shares):
        ctx = ctx.enter(tree)
        out = block(ctx.narrow("block"), *shares, **kwargs)
        checkpoint(ctx.narrow("check"))
        return out

    return protocol


def malicious(protocol, *shares, **kwargs):
    return run(protocol, *shares, security="malicious", **kwargs)


B2A = verified(bit_to_arith, BIT_TO_ARITH_STEPS)
A2B = verified(arith_to_bool, ARITH_TO_BOOL_STEPS)
SIGN = verified(sign_bit, SIGN_BIT_STEPS)
ADD = verified(add, ADD_STEPS)
LESS = verified(less_than, LESS_THAN_STEPS)
EQUAL = verified(equal, EQUAL_STEPS)
ONE_HOT = verified(one_hot, ONE_HOT_STEPS)


def to_arith(dtype):
    return verified(bool_to_arith, BOOL_TO_ARITH_STEPS, dtype=dtype)


def bit_to(dtype):
    return verified(bit_to_arith, BIT_TO_ARITH_STEPS, dtype=dtype)


@settings(max_examples=8, deadline=None)
@given(words(1), st.sampled_from([np.uint32, np.uint64]))
def test_bit_to_arith(bits, dtype):
    result = malicious(bit_to(dtype), share_boolean(bits, 1))
    assert np.array_equal(opened(result), bits.astype(dtype))
    assert not any(s.step.endswith("/input") for s in result.messages)  # H1 inputs nothing


@settings(max_examples=8, deadline=None)
@given(words(32), st.sampled_from([np.uint32, np.uint64]))
def test_arith_to_bool(values, dtype):
    result = malicious(A2B, share_arithmetic(values, dtype))
    assert np.array_equal(opened(result), values.astype(dtype))


@settings(max_examples=8, deadline=None)
@given(words(64))
def test_sign_bit(values):
    values = np.concatenate([values.astype(np.uint64), np.array([0, 2**63 - 1, 2**63, 2**64 - 1], np.uint64)])
    assert np.array_equal(opened(malicious(SIGN, share_arithmetic(values))), values >> 63)


@settings(max_examples=8, deadline=None)
@given(
    st.integers(1, 32).flatmap(lambda w: st.tuples(st.just(w), words(w))),
    st.sampled_from([np.uint32, np.uint64]),
)
def test_bool_to_arith(case, dtype):
    width, values = case
    result = malicious(to_arith(dtype), share_boolean(values, width))
    assert np.array_equal(opened(result), values.astype(dtype))


@settings(max_examples=8, deadline=None)
@given(st.integers(1, 64).flatmap(lambda w: st.tuples(st.just(w), words(w), st.randoms())))
def test_add_and_compare(case):
    width, a, rnd = case
    b = np.array(rnd.sample(list(a), len(a)), dtype=a.dtype)
    x, y = share_boolean(a, width), share_boolean(b, width)
    top = (1 << width) - 1
    assert np.array_equal(opened(malicious(ADD, x, y)), (a.astype(object) + b.astype(object)) & top)
    assert np.array_equal(opened(malicious(LESS, x, y)), (a < b).astype(np.uint8))
    assert np.array_equal(opened(malicious(EQUAL, x, y)), (a == b).astype(np.uint8))


@pytest.mark.parametrize("d", [1, 2, 3])
def test_one_hot(d):
    digits = RNG.integers(0, 1 << d, 30)
    bits = np.stack([(digits >> j) & 1 for j in range(d)]).astype(np.uint64)
    result = malicious(ONE_HOT, share_arithmetic(bits))
    assert np.array_equal(opened(result), (digits[None, :] == np.arange(1 << d)[:, None]).astype(np.uint64))


def test_edge_cases():
    top32 = np.array([2**32 - 1, 0, 1], np.uint64)
    assert np.array_equal(opened(malicious(A2B, share_arithmetic(top32, np.uint32))), top32)
    assert np.array_equal(opened(malicious(to_arith(np.uint64), share_boolean(top32, 32))), top32)
    empty = np.zeros(0, np.uint64)
    assert opened(malicious(bit_to(np.uint64), share_boolean(empty, 1))).size == 0
    assert opened(malicious(ADD, share_boolean(empty, 8), share_boolean(empty, 8))).size == 0


def test_a_corrupt_h1_cannot_input_a_wrong_bit():
    """The semi-honest hole: H1's input of b_0 ^ b_1 is unchecked. In malicious mode there is no input,
    and altering the product messages that replace it is caught."""
    bits = share_boolean(np.array([1, 0, 1], np.uint64), 1)
    semi = run(bit_to(np.uint64), bits, tamper=Tamper(0, "root/block/input", index=0))
    h2, h3 = semi.outputs[1], semi.outputs[2]  # the honest pair: components 1, 2 and 0
    assert (h2.left + h2.right + h3.right)[0] in (0, 2)  # semi-honest: silently wrong (not 1), no error
    for step in ("root/block/xor_01", "root/block/xor_2"):
        with pytest.raises(MaliciousBehaviourError, match="malicious behaviour detected"):
            malicious(bit_to(np.uint64), bits, tamper=Tamper(0, step))


def test_malicious_costs():
    n = 40
    bits = share_boolean(RNG.integers(0, 2, n), 1)
    for dtype in (np.uint32, np.uint64):
        b, k = np.dtype(dtype).itemsize, np.dtype(dtype).itemsize * 8
        result = malicious(lambda ctx, x, dt=dtype: bit_to_arith(ctx, x, dt), bits)
        check_cost(bit_to_arith, result, n, b, security="malicious")
        values = share_boolean(RNG.integers(0, 2**16, n), 16)
        result = malicious(lambda ctx, x, dt=dtype: bool_to_arith(ctx, x, dt), values)
        check_cost(bool_to_arith, result, n, b, security="malicious", k=k, n=n, b=b)
        result = malicious(arith_to_bool, share_arithmetic(RNG.integers(0, 2**32, n), dtype))
        check_cost(arith_to_bool, result, n, b, security="malicious", k=k)


def tampers(result):
    """Every message: +1 at the first and last word, bit 0 of the last, bit 7 of the first word."""
    for sent in result.messages:
        if sent.step.startswith("root/check/"):
            continue  # the checkpoint's own messages are swept in test_malicious.py
        yield Tamper.at(sent, "add")
        yield Tamper.at(sent, "add", index=-1)
        yield Tamper.at(sent, "flip", bit=0, index=-1)
        yield Tamper.at(sent, "flip", bit=7)


N = 5
CASES = {
    "bit_to_arith": (bit_to(np.uint64), lambda: [share_boolean(RNG.integers(0, 2, N), 1)]),
    "arith_to_bool": (A2B, lambda: [share_arithmetic(RNG.integers(0, 2**32, N), np.uint32)]),
    "sign_bit": (SIGN, lambda: [share_arithmetic(RNG.integers(0, 2**63, N, dtype=np.uint64) * 2 + 1)]),
    "bool_to_arith": (to_arith(np.uint32), lambda: [share_boolean(RNG.integers(0, 2**12, N), 12)]),
    "add": (ADD, lambda: [share_boolean(RNG.integers(0, 2**6, N), 6)] * 2),
    "less_than": (LESS, lambda: [share_boolean(RNG.integers(0, 2**5, N), 5)] * 2),
    "equal": (EQUAL, lambda: [share_boolean(RNG.integers(0, 2**5, N), 5)] * 2),
    "one_hot": (ONE_HOT, lambda: [share_arithmetic(RNG.integers(0, 2, (3, N)))]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_tampered_message_aborts(name):
    protocol, make = CASES[name]
    shares = make()
    honest = malicious(protocol, *shares)
    swept = list(tampers(honest))
    assert swept, "the block sends nothing"
    for tamper in swept:
        with pytest.raises(MaliciousBehaviourError, match="malicious behaviour detected"):
            malicious(protocol, *shares, tamper=tamper)
