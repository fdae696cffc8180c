"""The workers of one helper exchanging rows through Ray (``ipa_helper.siblings``), with real actors.

A local Ray cluster in this process (as a helper starts its own) and real
``IpaWorker`` actors, run as Ray runs a helper's (``remote_worker``); the
test's subclass only adds a method that runs exchanges on the worker's
collective, where a distributed protocol would. The queries over three helper
processes are in tests/e2e/test_cluster.py.
"""

import os
import shutil
import signal
import sys

import numpy as np
import pytest

from ipa.errors import IpaError
from ipa.mpc.channel import Peer
from ipa.mpc.prss import SEED_BYTES
from ipa_helper.cluster import IpaWorker, _init_local, remote_worker
from ipa_helper.config import ClusterConfig
from ipa_helper.siblings import Group

pytestmark = pytest.mark.cluster

ray = pytest.importorskip("ray")


class Exchanging(IpaWorker):
    """An IpaWorker that runs a list of exchanges on its collective, as a distributed protocol would."""

    def exchange(self, query_id, group, exchanges, timeout):
        """``exchanges``: (kind, step, parts) with kind ``all_to_all`` or ``all_gather``; returns
        (what arrived, bytes sent per step, a group permutation) or the error's message."""
        collective = self._collective(query_id, group, timeout)
        try:
            out = [getattr(collective, kind)(step, parts) for kind, step, parts in exchanges]
        except IpaError as exc:
            return f"{type(exc).__name__}: {exc}"
        return out, dict(collective.stats.bytes_sent), collective.prss.permutation("perm", Peer.NEXT, 50)


@pytest.fixture(scope="module")
def actors():
    saved = dict(os.environ)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actor class is this module's
    temp_dir = _init_local(ray, ClusterConfig(workers=4, object_store_bytes=256 << 20), 1)
    try:
        worker = remote_worker(ray, 3, Exchanging)
        started = [worker.remote() for _ in range(3)]
        ray.get([a.pid.remote() for a in started], timeout=120)
        yield started
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        os.environ.clear()
        os.environ.update(saved)


def _group(actors, k, seeds=b"s" * SEED_BYTES):
    pids = tuple(int(p) for p in ray.get([a.pid.remote() for a in actors], timeout=60))
    return Group(0, k, tuple(actors), pids, (seeds, seeds[::-1]))


def _parts(k, workers):
    """Worker k's message to worker j: two arrays whose contents name k and j, of a size of their own."""
    return [
        [
            np.arange(10 * k + j + 1, dtype=np.uint64) * (k + 1) + j,
            np.full((2, j + k + 1), k * 16 + j, np.uint8),
        ]
        for j in range(workers)
    ]


@pytest.mark.parametrize("workers", [2, 3])
def test_all_to_all_and_all_gather_among_actors_are_exact_and_counted(actors, workers):
    members = actors[:workers]
    gathered = [[np.array([k, 7 * k], np.int64)] for k in range(workers)]
    calls = [
        member.exchange.remote(
            f"q-{workers}",
            _group(members, k),
            [
                ("all_to_all", "sort/pass_0:route", _parts(k, workers)),
                ("all_gather", "sort:sizes", gathered[k]),
            ],
            60.0,
        )
        for k, member in enumerate(members)
    ]
    results = ray.get(calls, timeout=120)
    assert all(not isinstance(r, str) for r in results), results
    for k, (out, sent, _) in enumerate(results):
        routed, everyone = out
        for j in range(workers):  # what worker j sent to worker k, exactly
            assert [a.tolist() for a in routed[j]] == [a.tolist() for a in _parts(j, workers)[k]]
            assert [a.tolist() for a in everyone[j]] == [gathered[j][0].tolist()]
        to_others = sum(a.nbytes for j, part in enumerate(_parts(k, workers)) if j != k for a in part)
        assert sent == {"sort/pass_0:route": to_others, "sort:sizes": 16 * (workers - 1)}
    permutations = [r[2].tolist() for r in results]  # the group PRSS: every worker draws alike
    assert all(p == permutations[0] for p in permutations) and sorted(permutations[0]) == list(range(50))


def test_a_step_used_twice_is_refused(actors):
    members = actors[:2]
    twice = [("all_gather", "x", [np.zeros(1)]), ("all_gather", "x", [np.zeros(1)])]
    out = ray.get(
        [m.exchange.remote("q-twice", _group(members, k), twice, 30.0) for k, m in enumerate(members)]
    )
    assert all("collective step 'x' used twice" in r for r in out)


def test_abort_wakes_a_waiting_worker_with_its_reason(actors):
    members = actors[:2]
    waiting = members[0].exchange.remote(
        "q-abort", _group(members, 0), [("all_gather", "x", [np.zeros(3)])], 120.0
    )
    assert not ray.wait([waiting], timeout=1.0)[0]  # w1 never sends: w0 waits
    members[0].abort.remote("q-abort", "the query failed at H2")
    assert ray.get(waiting, timeout=60) == "TransportError: query aborted: the query failed at H2"
    # and the query stays ended there: a late message is dropped, a later wait fails at once
    ray.get(
        members[1].exchange.remote("q-abort", _group(members, 1), [("all_gather", "x", [np.zeros(3)])], 0.1)
    )
    late = members[0].exchange.remote(
        "q-abort", _group(members, 0), [("all_gather", "y", [np.zeros(3)])], 60.0
    )
    assert ray.get(late, timeout=60) == "TransportError: query aborted: the query failed at H2"


def test_a_silent_sibling_makes_the_wait_time_out_naming_it(actors):
    members = actors[:2]
    group = _group(members, 0)
    out = ray.get(members[0].exchange.remote("q-late", group, [("all_gather", "late", [np.zeros(1)])], 1.0))
    worker = f"H1's worker w1 (pid {group.pids[1]})"
    assert out == f"TransportError: no message at collective step 'late' from {worker} within 1 s"


@pytest.mark.parametrize("how", ["killed for good", "killed and restarted by Ray"])
def test_a_dead_sibling_wakes_the_waiting_worker(actors, how):
    worker = remote_worker(ray, 2, Exchanging)
    victim = worker.options(max_restarts=0 if how == "killed for good" else -1).remote()
    members = [actors[0], victim]
    group = _group(members, 0)
    waiting = members[0].exchange.remote(f"q-{how}", group, [("all_gather", "x", [np.zeros(5)])], 120.0)
    assert not ray.wait([waiting], timeout=1.0)[0]
    os.kill(group.pids[1], signal.SIGKILL)
    out = ray.get(waiting, timeout=120)
    assert out.startswith(f"TransportError: H1's worker w1 (pid {group.pids[1]}) ")
    assert "is gone: the worker process died" in out or "died and was restarted as pid" in out
    ray.kill(victim, no_restart=True)
