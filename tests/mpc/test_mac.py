"""Products checked by MACs under opened keys (``ipa.mpc.mac``): the sort's arithmetic in malicious mode.

Honest runs equal the plaintext and pass the check; every message of a small
run, altered in each way the harness can (+1 at the first and last word, bit
0 of the last, bit 7 and bit 40 of the first), aborts it; the sort's passes
record nothing for a checkpoint; the docstrings' costs are what the channel
measures.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipa.errors import MaliciousBehaviourError
from ipa.mpc.convert import BIT_TO_ARITH_STEPS, authenticated_bit_to_arith
from ipa.mpc.mac import MAC_KEYS, MAC_LOG2_BOUND, MAC_STEPS, Macs, value
from ipa.mpc.memory import Tamper
from ipa.mpc.one_hot import ONE_HOT_STEPS, authenticated_one_hot
from ipa.mpc.sharing import reconstruct, share_boolean
from ipa.mpc.sort import sort
from ipa.mpc.step import Steps
from ipa.mpc.testing import check_cost, run
from test_malicious import tampers

RNG = np.random.default_rng(61)
STEPS = Steps("digit", "rank", mac=MAC_STEPS, to_arith=BIT_TO_ARITH_STEPS, one_hot=ONE_HOT_STEPS)


def _authenticated_digit(ctx, digit):
    """A sort pass's products on their own: bits, indicators, ``Σ_v f_v·(v·f_v)``, then the check.

    Returns the value rows (still shared) and what the verifier spent.
    """
    ctx = ctx.enter(STEPS)
    macs = Macs.draw(ctx.narrow("mac"))
    bits = authenticated_bit_to_arith(ctx.narrow("to_arith"), macs, digit)
    f = authenticated_one_hot(ctx.narrow("one_hot"), macs, bits)
    weights = value(f).map(lambda a: a * np.arange(len(a), dtype=a.dtype)[:, None, None])  # shares of v·f_v
    total = macs.inner_product(ctx.narrow("rank"), f, weights, axis=0)
    macs.check()
    return value(bits)[:, 0], value(f)[:, 0], value(total)[0], list(ctx.verifier.bounds)


def _opened(result, k):
    return reconstruct([out[k] for out in result.outputs])


@settings(max_examples=12, deadline=None)
@given(st.integers(1, 4), st.integers(0, 40), st.data())
def test_authenticated_products_equal_the_plaintext_and_pass(d, n, data):
    digits = np.array(data.draw(st.lists(st.integers(0, 2**d - 1), min_size=n, max_size=n)), np.uint64)
    bits = share_boolean(np.stack([(digits >> j) & 1 for j in range(d)]), 1)

    result = run(_authenticated_digit, bits, security="malicious")

    clear_bits = np.stack([(digits >> j) & 1 for j in range(d)])
    assert np.array_equal(_opened(result, 0), clear_bits)
    assert np.array_equal(_opened(result, 1), (digits[None, :] == np.arange(2**d)[:, None]).astype(np.uint64))
    # Σ_v f_v·(v·f_v) is each row's digit: a product of two secrets summed over every term.
    assert np.array_equal(_opened(result, 2), digits)
    assert all(out[3] == [MAC_LOG2_BOUND] for out in result.outputs)


def _tampers(honest):
    """The basic protocols' tampers, and bit 40 of every product's words."""
    yield from tampers(honest)
    for sent in honest.messages:
        if "/mac/" not in sent.step:  # a product's words, not a digest's bytes
            yield Tamper.at(sent, "flip", bit=40)  # above the 32 bits the sort opens: caught all the same


def test_every_tampered_message_of_an_authenticated_pass_aborts():
    digits = RNG.integers(0, 8, 5, dtype=np.uint64)
    bits = share_boolean(np.stack([(digits >> j) & 1 for j in range(3)]), 1)
    honest = run(_authenticated_digit, bits, security="malicious")
    steps = {sent.step for sent in honest.messages}
    assert {s.rsplit("/", 1)[-1] for s in steps} >= {
        "authenticate",
        "xor_01",
        "xor_2",
        "level_0",
        "level_1",
        "rank",
    }
    for tamper in _tampers(honest):
        with pytest.raises(MaliciousBehaviourError, match="malicious behaviour detected") as caught:
            run(_authenticated_digit, bits, security="malicious", tamper=tamper)
        assert caught.value.check in {"MAC", "verified reveal"}, (tamper, caught.value.check)


def test_a_malicious_sort_pass_records_nothing_for_a_checkpoint():
    """The destinations' products are checked by their MACs: the move's checkpoint sends nothing,
    and each pass spends one MAC batch's bound."""
    keys = RNG.integers(0, 2**7, 50, dtype=np.uint64)

    def protocol(ctx, key, payload):
        (moved,) = sort(ctx, key, [payload])
        return moved, list(ctx.verifier.bounds)

    result = run(protocol, share_boolean(keys, 7), share_boolean(np.arange(50), 8), security="malicious")
    assert _opened(result, 0).tolist() == np.argsort(keys, kind="stable").tolist()
    assert result.outputs[0][1] == [MAC_LOG2_BOUND] * 3
    for p in range(3):
        assert result.bytes_sent(f"root/pass_{p}/move/check") == [0, 0, 0]
        assert min(result.bytes_sent(f"root/pass_{p}/mac")) > 0


@pytest.mark.parametrize("d", [1, 2, 3])
def test_authenticated_conversion_and_one_hot_cost_what_their_docstrings_say(d):
    n = 64
    bits = share_boolean(RNG.integers(0, 2, (d, n), dtype=np.uint64), 1)
    result = run(_authenticated_digit, bits, security="malicious")
    check_cost(authenticated_bit_to_arith, result, rows=d * n, prefix="root/to_arith", K=MAC_KEYS)
    check_cost(authenticated_one_hot, result, rows=n, prefix="root/one_hot", K=MAC_KEYS, d=d)
