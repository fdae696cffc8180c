import os
import threading

import numpy as np
import pytest

from ipa.errors import ProtocolError, TransportError
from ipa.mpc.channel import Peer
from ipa.mpc.collective import MemoryCollectives
from ipa.mpc.memory import run_parties
from ipa.mpc.prss import PRSS


def _group(size: int, timeout: float = 30.0) -> MemoryCollectives:
    return MemoryCollectives(size, PRSS(os.urandom(16), os.urandom(16)), timeout)


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_all_to_all_delivers_each_part_to_its_worker(size: int):
    group = _group(size)
    members = [group.member(k) for k in range(size)]

    def body(k: int):
        parts = [[np.array([10 * k + j], np.uint64), np.full(k + j, j, np.uint32)] for j in range(size)]
        return members[k].all_to_all("s", parts)

    received = run_parties([lambda k=k: body(k) for k in range(size)], on_failure=group.abort)
    for k, by_sender in enumerate(received):
        assert [int(a[0][0]) for a in by_sender] == [10 * j + k for j in range(size)]
        assert [a[1].tolist() for a in by_sender] == [[k] * (j + k) for j in range(size)]
    sent = [m.stats.total_bytes for m in members]
    assert sent == [sum(8 + 4 * (k + j) for j in range(size) if j != k) for k in range(size)]


def test_all_gather_gives_everyone_every_workers_arrays():
    group = _group(3)
    members = [group.member(k) for k in range(3)]
    out = run_parties([lambda k=k: members[k].all_gather("g", [np.arange(k + 1)]) for k in range(3)])
    for by_worker in out:
        assert [a[0].tolist() for a in by_worker] == [[0], [0, 1], [0, 1, 2]]


def test_a_step_is_used_once_and_received_arrays_are_read_only():
    group = _group(2)
    a, b = group.member(0), group.member(1)
    out = run_parties(
        [lambda: a.all_to_all("s", [[], [np.ones(2)]]), lambda: b.all_to_all("s", [[np.ones(1)], []])]
    )
    assert not out[0][1][0].flags.writeable
    with pytest.raises(ProtocolError, match="used twice"):
        a.all_to_all("s", [[], []])
    with pytest.raises(ValueError, match="one part per worker"):
        a.all_to_all("t", [[]])


def test_every_worker_draws_the_same_group_prss_and_it_is_not_the_helpers():
    prss = PRSS(os.urandom(16), os.urandom(16))
    group = MemoryCollectives(2, prss)
    draws = [group.member(k).prss.draw("root/x", Peer.NEXT, (8,), np.uint64) for k in range(2)]
    assert np.array_equal(draws[0], draws[1])
    assert not np.array_equal(draws[0], prss.draw("root/x", Peer.NEXT, (8,), np.uint64))


def test_a_missing_message_times_out_and_abort_wakes_the_waiter():
    group = _group(2, timeout=0.2)
    with pytest.raises(TransportError, match="timed out"):
        group.member(0).all_to_all("s", [[], []])
    group = _group(2)
    waiter = group.member(1)
    timer = threading.Timer(0.1, group.abort)
    timer.start()
    with pytest.raises(TransportError, match="another worker failed"):
        waiter.all_to_all("s", [[], []])
    timer.join()
