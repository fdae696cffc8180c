"""Malicious mode of the basic protocols: products recorded and verified at a checkpoint.

Honest runs equal the plaintext; every message of every block, altered in
each way the harness can (+1 at the first and last word, the low bit, bit 7 —
a padding bit of narrow boolean words), makes the run abort with
MaliciousBehaviourError; unmasked openings wait for a checkpoint.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipa.errors import MaliciousBehaviourError, ProtocolError
from ipa.mpc.buckets import parameters
from ipa.mpc.checkpoint import CHECKPOINT_STEPS, block_width, checkpoint
from ipa.mpc.memory import Tamper
from ipa.mpc.multiply import and_, inner_product, matmul, multiply
from ipa.mpc.reveal import reveal
from ipa.mpc.sharing import share_arithmetic, share_boolean
from ipa.mpc.step import Steps
from ipa.mpc.testing import check_cost, opened, run
from ipa.mpc.verifier import Verifier
from strategies import words

RNG = np.random.default_rng(23)
STEPS = Steps("verified_product", "product", "open", check=CHECKPOINT_STEPS)


def verified(op, *args, **kwargs):
    """A protocol: ``op`` at ``product``, a checkpoint, then the result (still shared)."""

    def protocol(ctx, *shares):
        ctx = ctx.enter(STEPS)
        z = op(ctx.narrow("product"), *shares, **kwargs)
        checkpoint(ctx.narrow("check"))
        assert ctx.verifier is not None and ctx.verifier.pending == 0
        return z

    return protocol


def verified_and_opened(op, **kwargs):
    """``op``, a checkpoint, then ``reveal`` of the product (allowed: nothing is pending)."""

    def protocol(ctx, *shares):
        ctx = ctx.enter(STEPS)
        z = op(ctx.narrow("product"), *shares, **kwargs)
        checkpoint(ctx.narrow("check"))
        return reveal(ctx.narrow("open"), z)

    return protocol


def malicious(protocol, *shares, **kwargs):
    return run(protocol, *shares, security="malicious", **kwargs)


@settings(max_examples=15, deadline=None)
@given(st.data(), st.sampled_from([np.uint32, np.uint64]))
def test_multiply_equals_the_plaintext(data, dtype):
    x = data.draw(words(64))
    y = data.draw(words(64, max_rows=0) if len(x) == 0 else st.just(np.roll(x, 1)))
    result = malicious(verified(multiply), share_arithmetic(x, dtype), share_arithmetic(y, dtype))
    assert np.array_equal(opened(result), x.astype(dtype) * y.astype(dtype))


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 64).flatmap(lambda w: st.tuples(st.just(w), words(w), st.randoms())))
def test_and_equals_the_plaintext(case):
    width, x, rnd = case
    y = np.array(rnd.sample(list(x), len(x)), dtype=x.dtype)
    result = malicious(verified(and_), share_boolean(x, width), share_boolean(y, width))
    assert np.array_equal(opened(result), x & y)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 3), st.integers(0, 40), st.integers(0, 1))
def test_inner_product_equals_the_plaintext(outputs, terms, axis):
    shape = (terms, outputs) if axis == 0 else (outputs, terms)
    x = RNG.integers(0, 2**64, shape, dtype=np.uint64)
    y = RNG.integers(0, 2**64, shape, dtype=np.uint64)
    result = malicious(verified(inner_product, axis=axis), share_arithmetic(x), share_arithmetic(y))
    assert np.array_equal(opened(result), (x * y).sum(axis, dtype=np.uint64))


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(0, 300), st.sampled_from([np.uint32, np.uint64]))
def test_matmul_equals_the_plaintext(a, b, n, dtype):
    x = RNG.integers(0, 2**32, (a, n), dtype=np.uint64).astype(dtype)
    y = RNG.integers(0, 2**32, (b, n), dtype=np.uint64).astype(dtype)
    result = malicious(verified(matmul), share_arithmetic(x, dtype), share_arithmetic(y, dtype))
    assert np.array_equal(opened(result), x @ y.T)


def test_edge_cases_and_reveal_after_a_checkpoint():
    top = np.array([2**64 - 1], np.uint64)
    for values in (np.zeros(0, np.uint64), top, np.array([0, 1, 2**63, 2**64 - 1], np.uint64)):
        x = share_arithmetic(values)
        result = malicious(verified_and_opened(multiply), x, x)
        assert all(np.array_equal(o, values * values) for o in result.outputs)
    bits = np.array([1], np.uint8)
    result = malicious(verified_and_opened(and_), share_boolean(bits, 1), share_boolean(bits, 1))
    assert all(np.array_equal(o, bits) for o in result.outputs)


def test_several_products_of_every_kind_share_one_checkpoint():
    steps = Steps("several", "m32", "m64", "b1", "b64", "inner", "mat", check=CHECKPOINT_STEPS)
    v = RNG.integers(0, 2**64, (4, 50), dtype=np.uint64)

    def protocol(ctx, a32, a64, b1, b64, m):
        ctx = ctx.enter(steps)
        out = [
            multiply(ctx.narrow("m32"), a32, a32),
            multiply(ctx.narrow("m64"), a64, a64),
            and_(ctx.narrow("b1"), b1, b1),
            and_(ctx.narrow("b64"), b64, b64),
            inner_product(ctx.narrow("inner"), m, m, axis=0),
            matmul(ctx.narrow("mat"), m, m),
        ]
        assert ctx.verifier is not None and ctx.verifier.pending == 6
        checkpoint(ctx.narrow("check"))
        return out

    shares = (
        share_arithmetic(v[0], np.uint32),
        share_arithmetic(v[1]),
        share_boolean(v[2] & np.uint64(1), 1),
        share_boolean(v[3], 64),
        share_arithmetic(v),
    )
    result = malicious(protocol, *shares)
    got = opened(result)
    expected = [v[0].astype(np.uint32) ** 2, v[1] * v[1], v[2] & 1, v[3], (v * v).sum(0), v @ v.T]
    assert all(np.array_equal(g, e) for g, e in zip(got, expected, strict=True))


def test_semi_honest_mode_records_nothing_and_the_checkpoint_sends_nothing():
    x = share_arithmetic(np.arange(5, dtype=np.uint64))
    result = run(verified_and_opened(multiply), x, x)
    assert result.bytes_sent("root/check") == [0, 0, 0]
    assert all(np.array_equal(o, np.arange(5) ** 2) for o in result.outputs)


def test_a_verifier_spills_as_soon_as_it_holds_too_many_words():
    """``Verifier.spill`` runs right after the record that takes the pending words above the bound."""
    steps = Steps("bounded", "first", "second", spill=CHECKPOINT_STEPS)

    def protocol(ctx, x):
        ctx = ctx.enter(steps)
        verifier = ctx.verifier
        verifier.spill, verifier.spill_above = (lambda: checkpoint(ctx.narrow("spill"))), 60
        multiply(ctx.narrow("first"), x, x)  # x, y, z of 10 words, 2 components: 60 words, not above
        pending = verifier.pending, verifier.pending_words
        multiply(ctx.narrow("second"), x, x)  # 120 words: the spill verifies both at once
        return pending, verifier.pending

    result = malicious(protocol, share_arithmetic(np.arange(10, dtype=np.uint64)))
    assert result.outputs == [((1, 60), 0)] * 3
    assert min(result.bytes_sent("root/spill")) > 0


def test_reveal_refuses_while_products_are_pending():
    def too_early(ctx, x):
        z = multiply(ctx, x, x)
        return reveal(ctx, z)  # at the same step as the product: it never gets that far

    x = share_arithmetic(np.arange(3, dtype=np.uint64))
    with pytest.raises(ProtocolError, match="not verified yet; run checkpoint"):
        malicious(too_early, x)


def test_a_security_mode_must_be_known():
    with pytest.raises(ValueError, match="security must be one of"):
        run(
            multiply,
            share_arithmetic(np.zeros(1, np.uint64)),
            share_arithmetic(np.zeros(1, np.uint64)),
            security="paranoid",
        )


# --- tamper sweeps ---------------------------------------------------------------------------------


def tampers(result):
    """Every message of an honest run: +1 at the first and last word, bit 0 and bit 7 of the first."""
    for sent in result.messages:
        yield Tamper.at(sent, "add")
        yield Tamper.at(sent, "add", index=-1)
        yield Tamper.at(sent, "flip", bit=0, index=-1)
        yield Tamper.at(sent, "flip", bit=7)


def sweep(protocol, *shares):
    honest = malicious(protocol, *shares)
    checked = 0
    for tamper in tampers(honest):
        with pytest.raises(MaliciousBehaviourError, match="malicious behaviour detected") as caught:
            malicious(protocol, *shares, tamper=tamper)
        assert caught.value.check in {
            "verified reveal",
            "triple cut-and-choose",
            "triple sacrifice",
            "multiplication",
        }
        checked += 1
    return honest, checked


N = 6


@pytest.mark.parametrize(
    ("name", "protocol", "shares"),
    [
        (
            "multiply",
            verified(multiply),
            lambda: [share_arithmetic(RNG.integers(0, 2**64, N, np.uint64))] * 2,
        ),
        (
            "multiply32",
            verified(multiply),
            lambda: [share_arithmetic(RNG.integers(0, 2**32, N, np.uint64), np.uint32)] * 2,
        ),
        ("and1", verified(and_), lambda: [share_boolean(RNG.integers(0, 2, N, np.uint64), 1)] * 2),
        ("and40", verified(and_), lambda: [share_boolean(RNG.integers(0, 2**40, N, np.uint64), 40)] * 2),
        (
            "inner",
            verified(inner_product, axis=0),
            lambda: [share_arithmetic(RNG.integers(0, 2**64, (3, N), np.uint64))] * 2,
        ),
        (
            "matmul",
            verified(matmul),
            lambda: [share_arithmetic(RNG.integers(0, 2**64, (2, N), np.uint64))] * 2,
        ),
        (
            "reveal",
            verified_and_opened(multiply),
            lambda: [share_arithmetic(RNG.integers(0, 2**64, N, np.uint64))] * 2,
        ),
    ],
)
def test_every_tampered_message_aborts(name, protocol, shares):
    shares = shares()
    honest, checked = sweep(protocol, *shares)
    steps = {s.step.rsplit("/", 1)[-1] for s in honest.messages}
    assert {"product", "triples", "coin", "open", "zero"} <= steps
    assert checked == 4 * len(honest.messages)


def check_checkpoint(result, n, units, i, o, b, security_bits=40):
    """The cost of a run's first checkpoint, one batch: its plan is the first of a fresh budget."""
    plan = parameters(units, Verifier(security_bits=security_bits).next_bits())
    check_cost(
        checkpoint,
        result,
        n,
        b,
        prefix="root/check",
        security="malicious",
        n=n,
        U=units,
        N=plan.buckets,
        B=plan.size,
        C=plan.opened,
        i=i,
        o=o,
        b=b,
    )


@pytest.mark.parametrize("second", [None, "and"])
def test_every_array_of_every_checkpoint_message_is_checked(second):
    """Messages with several arrays (the openings, the zero check's two digests, several batches):
    each array, at its first and last word. With ``and``, the checkpoint holds two batches."""
    steps = Steps("two_kinds", "product", "other", check=CHECKPOINT_STEPS)

    def protocol(ctx, x, b):
        ctx = ctx.enter(steps)
        z = multiply(ctx.narrow("product"), x, x)
        if second:
            and_(ctx.narrow("other"), b, b)
        checkpoint(ctx.narrow("check"))
        return z

    shares = share_arithmetic(RNG.integers(0, 2**64, 3, np.uint64)), share_boolean(np.array([1, 0, 1]), 1)
    honest = malicious(protocol, *shares)
    checked = 0
    for sent in honest.messages:
        for array, size in enumerate(sent.words):
            for index in {0, size - 1} if size else ():
                with pytest.raises(MaliciousBehaviourError):
                    malicious(protocol, *shares, tamper=Tamper.at(sent, "add", index=index, array=array))
                checked += 1
    assert max(len(s.words) for s in honest.messages) == (14 if second else 7)  # the openings
    assert checked > 3 * len(honest.messages)


def test_cost_of_a_checkpoint():
    for n, dtype in ((10, np.uint64), (300, np.uint32), (5000, np.uint64)):
        x = share_arithmetic(RNG.integers(0, 2**63, n, np.uint64), dtype)
        result = malicious(verified(multiply), x, x)
        b = np.dtype(dtype).itemsize
        check_cost(multiply, result, n, b, prefix="root/product", security="malicious")
        check_checkpoint(result, n, n, 2, 1, b)
    for width in (1, 16):
        x = share_boolean(RNG.integers(0, 2**width, 700, np.uint64), width)
        result, b = malicious(verified(and_), x, x), np.dtype(x[0].dtype).itemsize
        check_cost(and_, result, 700, b, prefix="root/product", security="malicious")
        check_checkpoint(result, 700, -(-700 * b // 8), 2, 1, 8)  # packed into 64-bit words


def test_a_run_with_a_bigger_budget_uses_a_bigger_plan():
    steps = Steps("stronger", "product", check=CHECKPOINT_STEPS)

    def protocol(ctx, x):
        ctx = ctx.enter(steps)
        ctx.verifier.security_bits = 60
        z = multiply(ctx.narrow("product"), x, x)
        checkpoint(ctx.narrow("check"))
        assert ctx.verifier.log2_soundness <= -60
        return z

    values = RNG.integers(0, 2**64, 300, np.uint64)
    result = malicious(protocol, share_arithmetic(values))
    assert np.array_equal(opened(result), values * values)
    assert parameters(300, 60).size > parameters(300).size
    check_checkpoint(result, 300, 300, 2, 1, 8, security_bits=60)


@pytest.mark.parametrize(("outputs", "terms"), [(1, 1), (50, 8), (3, 1000)])
def test_cost_of_checking_sums_of_products(outputs, terms):
    x = share_arithmetic(RNG.integers(0, 2**63, (terms, outputs), np.uint64))
    result = malicious(verified(inner_product, axis=0), x, x)
    w = block_width(outputs, terms)
    check_checkpoint(result, outputs, outputs * -(-terms // w), 2 * w, 1, 8)
    a = share_arithmetic(RNG.integers(0, 2**63, (3, terms), np.uint64))
    b = share_arithmetic(RNG.integers(0, 2**63, (2, terms), np.uint64))
    result = malicious(verified(matmul), a, b)
    w = block_width(1, terms, 3, 2)
    check_checkpoint(result, 1, -(-terms // w), (3 + 2) * w, 3 * 2, 8)

    x = share_arithmetic(RNG.integers(0, 2**63, 40, np.uint64))
    check_cost(
        reveal,
        malicious(verified_and_opened(multiply), x, x),
        40,
        prefix="root/open",
        security="malicious",
        n=40,
        b=8,
    )
