"""Malicious-security checks: honest runs equal the plaintext, every tampered message aborts."""

import dataclasses
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipa.errors import MaliciousBehaviourError
from ipa.mpc.channel import Peer
from ipa.mpc.memory import Tamper
from ipa.mpc.prss import PRSS
from ipa.mpc.replicated import AShares, BShares
from ipa.mpc.sharing import share_arithmetic, share_boolean
from ipa.mpc.testing import run
from ipa.mpc.verify import check_consistent, digest, verified_reveal
from strategies import words

N = 16
RNG = np.random.default_rng(17)
VALUES = RNG.integers(0, 2**63, N, dtype=np.uint64)


def columns():
    """An arithmetic column over Z_2^64, one over Z_2^32 and a 40-bit boolean one."""
    return (
        share_arithmetic(VALUES),
        share_arithmetic(VALUES, np.uint32),
        share_boolean(VALUES >> np.uint64(24), 40),
    )


def check_all(ctx, *cols):
    check_consistent(ctx, *cols)
    return True


def tampers(result):
    """Every message of an honest run, altered in each way the harness can: +1, low bit, top bit."""
    for sent in result.messages:
        yield Tamper.at(sent, "add")
        yield Tamper.at(sent, "flip", bit=0)
        yield Tamper.at(sent, "flip", bit=7)  # every message here has words of at least 8 bits


@settings(max_examples=30, deadline=None)
@given(words(64), st.sampled_from([np.uint32, np.uint64]))
def test_verified_reveal_opens_arithmetic_values(values, dtype):
    result = run(verified_reveal, share_arithmetic(values, dtype))
    assert all(np.array_equal(o, values.astype(dtype)) for o in result.outputs)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 64).flatmap(lambda w: st.tuples(st.just(w), words(w))))
def test_verified_reveal_opens_boolean_values(width_values):
    width, values = width_values
    result = run(verified_reveal, share_boolean(values, width))
    assert all(np.array_equal(o, values) for o in result.outputs)


@settings(max_examples=20, deadline=None)
@given(words(64), words(8))
def test_consistent_shares_pass(a, b):
    result = run(check_all, share_arithmetic(a), share_boolean(b, 8))
    assert result.outputs == [True] * 3


def test_empty_and_single_row():
    for values in (np.zeros(0, np.uint64), np.array([2**64 - 1], np.uint64)):
        assert all(np.array_equal(o, values) for o in run(verified_reveal, share_arithmetic(values)).outputs)
        assert run(check_all, share_arithmetic(values)).outputs == [True] * 3
    assert run(check_all).outputs == [True] * 3  # no columns at all


def test_every_tampered_message_of_check_consistent_aborts():
    result = run(check_all, *columns())
    assert len(result.messages) == 6  # each party, to each neighbour
    for tamper in tampers(result):
        with pytest.raises(MaliciousBehaviourError, match="malicious behaviour detected: input consistency"):
            run(check_all, *columns(), tamper=tamper)


@pytest.mark.parametrize("make", [lambda: share_arithmetic(VALUES), lambda: share_boolean(VALUES >> 60, 4)])
def test_every_tampered_message_of_verified_reveal_aborts(make):
    result = run(verified_reveal, make())
    assert {(s.party, s.step.rsplit("/", 1)[1]) for s in result.messages} == {
        (p, step) for p in range(3) for step in ("value", "confirm")
    }
    for tamper in tampers(result):
        for index in (0, N - 1) if tamper.step.endswith("value") else (0, 31):
            tamper = dataclasses.replace(tamper, index=index)
            with pytest.raises(
                MaliciousBehaviourError, match="malicious behaviour detected: verified reveal"
            ):
                run(verified_reveal, make(), tamper=tamper)


def altered(shares, party, side):
    """``shares`` with ``party``'s copy (``left`` or ``right``) of row 0 changed by one (XOR 1)."""
    out = list(shares)
    pair = out[party]
    comp = getattr(pair, side).copy()
    comp[0] ^= comp.dtype.type(1)
    if isinstance(pair, BShares):
        out[party] = dataclasses.replace(pair, **{side: comp})
    else:
        out[party] = AShares(**{"left": pair.left, "right": pair.right, side: comp})
    return out


@pytest.mark.parametrize("party", [0, 1, 2])
@pytest.mark.parametrize("side", ["left", "right"])
def test_inconsistent_copies_abort(party, side):
    """A report collector (or a helper) whose two copies of one component differ is caught."""
    a, b, c = columns()
    with pytest.raises(MaliciousBehaviourError, match="input consistency") as caught:
        run(check_all, a, altered(b, party, side), c)
    assert str(VALUES[0]) not in str(caught.value)


@pytest.mark.parametrize("party", [0, 1, 2])
def test_a_helper_revealing_an_altered_component_is_caught(party):
    """A local deviation: the helper sends a wrong x_i but its true copy's digest is not its to give."""
    shares = altered(share_arithmetic(VALUES), party, "left")
    with pytest.raises(MaliciousBehaviourError, match="verified reveal"):
        run(verified_reveal, shares)


def test_the_error_names_the_check_and_no_value():
    error = MaliciousBehaviourError("verified reveal", "H1 and H3 sent H2 different copies of a component")
    assert error.check == "verified reveal"
    assert str(error) == (
        "malicious behaviour detected: verified reveal check failed "
        "(H1 and H3 sent H2 different copies of a component)"
    )


def test_keyed_digests_agree_between_the_two_neighbours_only():
    """A confirmation's Poly1305 key is the pair's: the neighbours' digests of the same bytes agree,
    a third helper's key gives another digest, and any changed word, dtype or shape changes it."""
    seeds = [os.urandom(16) for _ in range(3)]
    prss = [PRSS(prev_seed=seeds[(i - 1) % 3], next_seed=seeds[i]) for i in range(3)]
    key = prss[0].mac_key("root/x/confirm", Peer.NEXT)
    assert key == prss[1].mac_key("root/x/confirm", Peer.PREV)
    assert key != prss[2].mac_key("root/x/confirm", Peer.NEXT)
    assert key != prss[0].mac_key("root/y/confirm", Peer.NEXT)
    big = RNG.integers(0, 2**64, 300_000, dtype=np.uint64)  # more than one block of hashing
    mine = digest("root/x", [big, VALUES], key)
    assert np.array_equal(mine, digest("root/x", [big.copy(), VALUES], key))
    third = prss[2].mac_key("root/x/confirm", Peer.NEXT)
    assert not np.array_equal(mine, digest("root/x", [big, VALUES], third))
    assert not np.array_equal(mine, digest("root/x", [big, VALUES]))  # unkeyed: SHA-256 of the bytes
    changed = big.copy()
    changed[-1] ^= np.uint64(1 << 63)
    assert not np.array_equal(mine, digest("root/x", [changed, VALUES], key))
    assert not np.array_equal(mine, digest("root/x", [big.view(np.int64), VALUES], key))
    assert not np.array_equal(mine, digest("root/x", [big.reshape(2, -1), VALUES], key))
    assert not np.array_equal(mine, digest("root/z", [big, VALUES], key))
