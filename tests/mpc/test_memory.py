"""The in-memory runner and the channel's accounting and step checks."""

import time

import numpy as np
import pytest

from ipa.errors import ProtocolError, TransportError
from ipa.mpc.channel import Peer
from ipa.mpc.memory import run_three
from ipa.mpc.step import Steps


def ring_pass(ctx, value):
    ctx.send(Peer.NEXT, np.full(10, value, np.uint64))
    (got,) = ctx.receive(Peer.PREV, np.zeros(10, np.uint64))
    return int(got[0])


def test_messages_go_to_the_next_party_and_bytes_are_counted():
    result = run_three(ring_pass, [10, 11, 12])
    assert result.outputs == [12, 10, 11]
    assert result.bytes_sent() == [80, 80, 80]
    assert result.rounds == 1
    assert result.stats[0].bytes_sent == {"root": 80}


def test_sending_twice_under_one_step_is_refused():
    def twice(ctx, _):
        ctx.send(Peer.NEXT, np.zeros(1))
        ctx.send(Peer.NEXT, np.zeros(1))

    with pytest.raises(ProtocolError, match="used twice"):
        run_three(twice, [None] * 3)


def test_a_failing_party_wakes_the_others_and_its_error_is_raised():
    def fail_one(ctx, _):
        if ctx.party == 1:
            raise RuntimeError("boom")
        ctx.receive(Peer.NEXT, np.zeros(1))

    with pytest.raises(RuntimeError, match="boom"):
        run_three(fail_one, [None] * 3, timeout=30)


def test_a_missing_message_times_out_while_a_party_is_busy():
    def wait(ctx, _):
        if ctx.party == 2:
            time.sleep(0.5)  # busy, not waiting: no deadlock yet
            return
        ctx.receive(Peer.PREV, np.zeros(1))

    with pytest.raises(TransportError, match="timed out"):
        run_three(wait, [None] * 3, timeout=0.1)


def test_a_deadlock_fails_at_once_naming_every_pending_receive_and_unmatched_send():
    steps = Steps("ring", "perm_01", "perm01")

    def typo(ctx, _):
        ctx = ctx.enter(steps)
        here = ctx.narrow("perm01" if ctx.party == 1 else "perm_01")
        here.send(Peer.NEXT, np.zeros(1))
        here.receive(Peer.PREV, np.zeros(1))

    # The timeout is 1 s: failing with "deadlock" rather than "timed out" shows the
    # runner saw the deadlock before a second had passed.
    with pytest.raises(ProtocolError, match="deadlock") as failure:
        run_three(typo, [None] * 3, timeout=1.0)
    message = str(failure.value)
    assert "H2 waits at 'root/perm01' for H1" in message
    assert "H3 waits at 'root/perm_01' for H2" in message
    assert "H1 to H2 at 'root/perm_01'" in message
    assert "H2 to H3 at 'root/perm01'" in message
    assert "Finished: H1" in message


def test_a_party_that_returns_without_sending_deadlocks_the_others():
    def forget(ctx, _):
        if ctx.party != 0:
            ctx.receive(Peer.PREV, np.zeros(1))

    with pytest.raises(ProtocolError, match=r"H2 waits at 'root' for H1.*Finished: H1"):
        run_three(forget, [None] * 3, timeout=1.0)


def test_a_message_with_the_wrong_layout_is_rejected():
    def mismatch(ctx, _):
        ctx.send(Peer.NEXT, np.zeros(3, np.uint32))
        ctx.receive(Peer.PREV, np.zeros(3, np.uint64))

    with pytest.raises(TransportError, match="wrong layout"):
        run_three(mismatch, [None] * 3)


def test_received_arrays_are_read_only():
    def write(ctx, _):
        ctx.send(Peer.NEXT, np.zeros(3))
        (got,) = ctx.receive(Peer.PREV, np.zeros(3))
        got[0] = 1

    with pytest.raises(ValueError, match="read-only"):
        run_three(write, [None] * 3)
