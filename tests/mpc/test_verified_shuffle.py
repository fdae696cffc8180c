"""The verified shuffle, move_rows and sort of malicious mode (``ipa.mpc.tags``, docs/malicious.md).

Honest runs equal the plaintext; every message of a malicious shuffle,
move_rows and a small sort, altered in each way the harness can, aborts the
run with MaliciousBehaviourError before anything unmasked is opened; so do
local deviations (a different permutation on one half, two rows swapped, a
row replaced by a copy of another), made through test-only hooks on the
in-memory runner's channel and PRSS.
"""

import threading
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import test_sort
from ipa.errors import MaliciousBehaviourError
from ipa.mpc import memory
from ipa.mpc.memory import Tamper
from ipa.mpc.multiply import multiply
from ipa.mpc.permute import move_rows
from ipa.mpc.prss import PRSS
from ipa.mpc.sharing import share_arithmetic, share_boolean
from ipa.mpc.shuffle import shuffle
from ipa.mpc.sort import sort
from ipa.mpc.testing import check_cost, opened, run
from strategies import words

RNG = np.random.default_rng(19)
CHECKS = {
    "shuffle key",
    "shuffle tags",
    "verified reveal",
    "triple cut-and-choose",
    "triple sacrifice",
    "multiplication",
    "MAC",
}


def malicious(protocol, *shares, **kwargs):
    return run(protocol, *shares, security="malicious", **kwargs)


def three_columns(ctx, a, b, c):
    return shuffle(ctx, [a, b, c])


def mixed(n):
    """A uint64 arithmetic column, a 7-bit boolean one and three stacked 1-bit columns, all of row ids."""
    ids = np.arange(n, dtype=np.uint64)
    return ids, [
        share_arithmetic(ids),
        share_boolean((ids * 7 + 3) & 0x7F, 7),
        share_boolean(np.stack([ids & 1, (ids >> 1) & 1, (ids >> 2) & 1]), 1),
    ]


def rows_kept_together(ids, out):
    moved, seven, bits = out
    assert sorted(moved.tolist()) == ids.tolist()
    assert np.array_equal(seven, (moved * 7 + 3) & 0x7F)
    assert np.array_equal(bits, np.stack([moved & 1, (moved >> 1) & 1, (moved >> 2) & 1]))


# --- honest runs -----------------------------------------------------------------------------------


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 40))
def test_the_malicious_shuffle_keeps_every_row_whole(n):
    ids, shares = mixed(n)
    rows_kept_together(ids, opened(malicious(three_columns, *shares)))


def test_the_malicious_shuffle_permutes_and_costs_what_its_docstring_says():
    n = 500
    ids, shares = mixed(n)
    result = malicious(three_columns, *shares)
    out = opened(result)
    rows_kept_together(ids, out)
    assert not np.array_equal(out[0], ids)
    # W: 8 + 1 + 3 bytes of data; t: 8 boolean + 16 arithmetic tag bytes; L: 64 per boolean byte + 16.
    check_cost(shuffle, result, n, word_bytes=1, security="malicious", W=12, t=24, L=64 * 4 + 16, n=n)
    boolean_only = malicious(lambda ctx, x: shuffle(ctx, [x]), share_boolean(ids & 0xFF, 8))
    check_cost(shuffle, boolean_only, n, word_bytes=1, security="malicious", W=1, t=8, L=64, n=n)


def test_the_semi_honest_shuffle_is_unchanged():
    ids, shares = mixed(300)
    result = run(three_columns, *shares)
    rows_kept_together(ids, opened(result))
    check_cost(shuffle, result, 300, word_bytes=1, c=12)


def move_with_a_product(ctx, dest, one, column):
    """move_rows whose dest comes from a product, so its checkpoint has work to do."""
    return move_rows(ctx.narrow("move"), multiply(ctx.narrow("product"), dest, one), [column])


def _move_protocol():
    from ipa.mpc.permute import MOVE_ROWS_STEPS
    from ipa.mpc.step import Steps

    steps = Steps("move_with_a_product", "product", move=MOVE_ROWS_STEPS)

    def protocol(ctx, dest, one, column):
        return move_with_a_product(ctx.enter(steps), dest, one, column)

    return protocol


MOVE = _move_protocol()


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 30), st.randoms())
def test_malicious_move_rows_puts_each_row_at_its_destination(n, rnd):
    dest = np.array(rnd.sample(range(n), n), np.uint64)
    values = np.arange(n, dtype=np.uint64) * 3 + 1
    shares = [share_arithmetic(dest), share_arithmetic(np.ones(n, np.uint64)), share_boolean(values, 40)]
    (out,) = opened(malicious(MOVE, *shares))
    expected = np.empty(n, np.uint64)
    expected[dest] = values
    assert np.array_equal(out, expected)


def sorted_payload(keys, width, digit_bits, payload, **kwargs):
    return test_sort.sorted_payload(keys, width, digit_bits, payload, security="malicious", **kwargs)


@settings(max_examples=12, deadline=None)
@given(st.integers(1, 20), st.integers(1, 4), st.data())
def test_the_malicious_sort_is_stable_and_equals_the_plaintext(width, digit_bits, data):
    keys = data.draw(words(width, max_rows=24))
    if len(keys) > 4 and data.draw(st.booleans()):
        keys[: len(keys) // 2] = keys[-1]  # many ties
    n = len(keys)
    rows = np.arange(n, dtype=np.uint64)
    _, out = sorted_payload(keys, width, digit_bits, [share_boolean(rows, 32), share_boolean(rows & 0x7F, 7)])
    order = np.argsort(keys, kind="stable")
    assert out[0].tolist() == rows[order].tolist()
    assert out[1].tolist() == (rows & 0x7F)[order].tolist()


def test_the_malicious_sort_with_maximum_keys_one_row_and_no_rows():
    keys = np.array([2**40 - 1, 0, 2**40 - 1, 1], np.uint64)
    _, (out,) = sorted_payload(keys, 40, 3, [share_boolean(np.arange(4), 8)])
    assert out.tolist() == [1, 3, 0, 2]
    _, (one,) = sorted_payload(keys[:1], 40, 3, [share_boolean(np.array([9]), 8)])
    assert one.tolist() == [9]
    _, (none,) = sorted_payload(keys[:0], 40, 3, [share_boolean(np.array([], np.uint64), 8)])
    assert none.size == 0


def test_malicious_mode_refuses_what_it_cannot_verify():
    x = share_arithmetic(np.arange(4), np.uint32)
    with pytest.raises(ValueError, match="uint64 only"):
        malicious(lambda ctx, col: shuffle(ctx, [col]), x)
    with pytest.raises(ValueError, match="dest must be uint64"):
        malicious(lambda ctx, d: move_rows(ctx, d, []), x)
    with pytest.raises(ValueError, match="payload must be boolean"):
        sorted_payload(np.arange(4, dtype=np.uint64), 4, 2, [share_arithmetic(np.arange(4))])


# --- tampered messages -----------------------------------------------------------------------------


def sweep(protocol, shares, kinds):
    """Tamper with every message of an honest run in each of ``kinds(number)``: every run must abort."""
    honest = malicious(protocol, *shares)
    for number, sent in enumerate(honest.messages):
        for kind, kwargs in kinds(number):
            with pytest.raises(MaliciousBehaviourError, match="malicious behaviour detected") as caught:
                malicious(protocol, *shares, tamper=Tamper.at(sent, kind, **kwargs))
            assert caught.value.check in CHECKS, (sent, caught.value.check)
    return honest


KINDS = [("add", {}), ("add", {"index": -1}), ("flip", {"bit": 0, "index": -1}), ("flip", {"bit": 7})]


def all_kinds(number):
    return KINDS


def alternating(number):
    """+1 at the first word, or bit 0 of the last word, in turn: both kinds, half the runs."""
    return [KINDS[0] if number % 2 == 0 else KINDS[2]]


def test_every_tampered_message_of_a_malicious_shuffle_aborts():
    _, shares = mixed(8)
    honest = sweep(three_columns, shares, all_kinds)
    steps = {s.step.split("/", 1)[1] for s in honest.messages}
    assert steps == {
        "tags/create",
        "perm_01",
        "perm_12",
        "perm_20",
        "check/open_key",
        "check/stage_1",
        "check/zero",
    }


def test_every_tampered_message_of_a_malicious_move_rows_aborts():
    dest = np.array([3, 0, 5, 1, 2, 4, 7, 6], np.uint64)
    shares = [
        share_arithmetic(dest),
        share_arithmetic(np.ones(8, np.uint64)),
        share_boolean(np.arange(8, dtype=np.uint64) * 9, 8),
    ]
    honest = sweep(MOVE, shares, alternating)
    steps = {s.step for s in honest.messages}
    assert any("/check/" in s and "triples" in s for s in steps)  # the checkpoint ran
    assert "root/move/open" in steps


def test_every_tampered_message_of_a_small_malicious_sort_aborts():
    keys = np.array([3, 1, 0, 1], np.uint64)
    honest = sweep(
        lambda ctx, k, p: sort(ctx, k, [p], digit_bits=2),
        [share_boolean(keys, 2), share_boolean(np.arange(4, dtype=np.uint64), 8)],
        alternating,
    )
    steps = {s.step.split("/", 2)[1] for s in honest.messages}
    assert steps == {"pass_0", "invert", "apply"}


def test_the_semi_honest_shuffle_does_not_notice_a_tamper():
    ids, shares = mixed(8)
    result = run(three_columns, *shares, tamper=Tamper(0, "root/perm_01"))
    moved = opened(result)[0]
    assert sorted(moved.tolist()) != ids.tolist()  # one row altered, and no error


# --- local deviations ------------------------------------------------------------------------------


@contextmanager
def deviating_permutation(monkeypatch, helper, step_suffix, change):
    """Helper ``helper`` (1-3) uses ``change(perm)`` instead of its PRSS permutation at one step."""
    original = PRSS.permutation

    def permutation(self, step, peer, n):
        perm = original(self, step, peer, n)
        if threading.current_thread().name == f"H{helper}" and step.endswith(step_suffix):
            return change(perm)
        return perm

    monkeypatch.setattr(PRSS, "permutation", permutation)
    yield


@contextmanager
def altered_message(monkeypatch, helper, step_suffix, change):
    """Helper ``helper`` (1-3) sends ``change(array)`` for every array of its message at one step."""
    original = memory._MemoryChannel._deliver

    def deliver(self, step, to, arrays):
        if self.party == helper - 1 and step.endswith(step_suffix):
            arrays = [*[change(np.array(a)) for a in arrays[:-1]], arrays[-1]]  # not the depth word
        return original(self, step, to, arrays)

    monkeypatch.setattr(memory._MemoryChannel, "_deliver", deliver)
    yield


def swap_rows(a):
    a[..., [0, 1]] = a[..., [1, 0]]
    return a


def copy_row(a):
    a[..., 1] = a[..., 0]
    return a


def other_order(perm):
    return np.roll(perm, 1)


@pytest.mark.parametrize(
    ("helper", "step"),
    [(1, "perm_01"), (2, "perm_01"), (2, "perm_12"), (3, "perm_12"), (1, "perm_20"), (3, "perm_20")],
)
def test_a_helper_permuting_its_half_differently_is_caught(monkeypatch, helper, step):
    _, shares = mixed(8)
    with (
        deviating_permutation(monkeypatch, helper, f"{step}/perm", other_order),
        pytest.raises(MaliciousBehaviourError, match="shuffle tags"),
    ):
        malicious(three_columns, *shares)


@pytest.mark.parametrize("change", [swap_rows, copy_row])
@pytest.mark.parametrize(("helper", "step"), [(1, "perm_01"), (2, "perm_12"), (1, "perm_20"), (3, "perm_20")])
def test_a_helper_swapping_or_duplicating_rows_in_its_message_is_caught(monkeypatch, helper, step, change):
    _, shares = mixed(8)
    with (
        altered_message(monkeypatch, helper, step, change),
        pytest.raises(MaliciousBehaviourError, match="shuffle tags"),
    ):
        malicious(three_columns, *shares)


def test_the_hooks_do_change_a_semi_honest_shuffle(monkeypatch):
    ids, shares = mixed(8)
    with altered_message(monkeypatch, 1, "perm_01", copy_row):
        moved = opened(run(three_columns, *shares))[0]
    assert sorted(moved.tolist()) != ids.tolist()  # a row altered, unnoticed in semi-honest mode
    with deviating_permutation(monkeypatch, 2, "perm_12/perm", other_order):
        moved = opened(run(three_columns, *shares))[0]
    assert sorted(moved.tolist()) != ids.tolist()


def test_malicious_move_rows_and_sort_cost_what_their_docstrings_say():
    n = 200
    dest = share_arithmetic(RNG.permutation(n).astype(np.uint64))
    column = share_boolean(np.arange(n, dtype=np.uint64), 16)
    result = malicious(lambda ctx, d, c: move_rows(ctx, d, [c]), dest, column)
    # W: 8 (dest) + 2 bytes; t: 8 boolean + 16 arithmetic tag bytes; L: 64 per boolean byte + 16.
    check_cost(move_rows, result, n, word_bytes=1, security="malicious", W=10, t=24, L=2 * 64 + 16, n=n)
    keys = RNG.integers(0, 2**7, n, dtype=np.uint64)
    for width, digit_bits in ((7, 3), (7, 2), (1, 3)):
        result, _ = sorted_payload(keys & ((1 << width) - 1), width, digit_bits, [column])
        check_cost(sort, result, n, security="malicious", w=width, d=digit_bits)
