"""A helper's Ray worker killed or frozen mid-query: three real helper processes with two workers each.

Marked ``cluster``; its network starts after ``test_cluster.py``'s has stopped.
The worker to kill is the one the helper itself names (its ``worker_fault``
log event carries the pid of the actor it is about to stop), not one found by
scanning processes.
"""

import json
import os
import signal
import time

import pytest
from cluster_net import (
    CONFIG,
    WORKERS,
    alive,
    cluster_network,
    comm,
    ipa,
    log_events,
    state,
    wait_for_event,
    workers_of,
)

from ipa.crypto.binding import Binding
from ipa.network import Network
from ipa.reference import attribute_query
from ipa.synthetic import generate
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.local_network import LocalNetwork, descendants
from ipa_client.query_client import QueryClient, QueryFailedError, endpoints, query_params
from ipa_helper.cluster import WORKER_NAME

pytestmark = pytest.mark.cluster


def _binding(site: str) -> Binding:
    return Binding(site=site, report_collector="default", epoch=3, match_key_provider="mkp")


def _uploads(local: LocalNetwork, site: str, data) -> list[bytes]:
    net = Network.load(local.network_file)
    collector = ReportCollector(net, _binding(site), CONFIG)
    collector.add_events(data, simulate_user_agents(data, net, _binding(site)))
    return list(collector.uploads())


def _budget(local: LocalNetwork, site: str) -> dict:
    done = ipa("budget", "--network", str(local.network_file), "--identity",
               str(local.directory / "collectors" / "default.toml"), "--site", site, "--epoch", "3",
               "--wait", "30")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _stopped(pid: int, deadline: float = 120.0) -> None:
    """Wait until process ``pid`` has stopped itself (SIGSTOP at its failpoint)."""
    end = time.monotonic() + deadline
    while state(pid) != "T":
        assert time.monotonic() < end, f"worker {pid} did not stop within {deadline:.0f} s"
        time.sleep(0.05)


def _start(client: QueryClient, local: LocalNetwork, site: str, data) -> str:
    """A noised query of ``data``, created and uploaded: its id."""
    query_id = client.create(query_params(_binding(site), CONFIG, epsilon=1.0, delta=1e-9))
    client.upload(query_id, _uploads(local, site, data))
    return query_id


def _failed(client: QueryClient, query_id: str) -> str:
    """Why query ``query_id`` failed (it must fail)."""
    with pytest.raises(QueryFailedError) as failed:
        client.wait(query_id, poll=0.1, deadline=120)
    return str(failed.value)


def _refunded(local: LocalNetwork, site: str, query_id: str) -> dict:
    """The budget state, once query ``query_id`` is refunded and every helper agrees."""
    state_ = _budget(local, site)
    (mine,) = [q for q in state_["queries"] if q["query_id"] == query_id]
    assert mine["state"] == "refunded" and state_["agree"]
    return state_


def _exact_query(client: QueryClient, local: LocalNetwork, site: str, data) -> None:
    query_id = client.create(query_params(_binding(site), CONFIG, no_noise=True))
    client.upload(query_id, _uploads(local, site, data))
    client.wait(query_id, poll=0.1, deadline=300)
    assert client.results(query_id).tolist() == attribute_query(data, CONFIG).tolist()


def _replaced(helper_pid: int, old: int, deadline: float = 300.0) -> None:
    """Wait until Ray has replaced worker ``old`` of the helper (its workers are back to W).

    Generous: a new worker process imports Ray, numpy and the helper's code, and once took
    over two minutes while two test runs and benchmarks shared the two cores.
    """
    end = time.monotonic() + deadline
    while (alive(old) or len(workers_of(helper_pid)) < WORKERS) and time.monotonic() < end:
        time.sleep(0.2)
    below = {p: comm(p) for p in descendants(helper_pid)}
    assert not alive(old), f"worker {old} is still alive"
    assert len(workers_of(helper_pid)) == WORKERS, f"not replaced within {deadline:.0f} s: {below}"


def test_worker_faults_fail_the_query_cleanly_and_the_helpers_keep_serving(tmp_path):
    """H1's worker w0 stops itself at the first query's decryption (IPA_FAILPOINT=worker:stop) and
    we kill -9 it; H3's w0 stops itself at the third and nobody kills it; H2's w0 kills itself at
    the start of the aggregation of its part of the fourth query (its second on the workers: the
    first and third fail before), while its triple's peers wait for it; H1's w0 kills itself at the
    start of the cap of its part of the sixth query (H1's fourth on the workers), its sort and
    attribution done, while its sibling w1 and its triple's peers wait for it. Each time the query
    fails at all three helpers and is refunded, the worker is replaced, and the next query is exact."""
    site = "faults.example"
    data = generate(800, seed=4, num_breakdowns=CONFIG.num_breakdowns)
    env = {
        1: {"IPA_FAILPOINT": "worker:stop,worker_cap:kill@4"},
        2: {"IPA_FAILPOINT": "worker_aggregate:kill@2"},
        3: {"IPA_FAILPOINT": "worker:stop@3"},
    }
    # 40 s: a message or a worker's answer late by more fails a query; a worker Ray has just
    # restarted may take that long to answer its first call on a loaded machine. Only the frozen
    # worker's query (3) waits it out.
    with cluster_network(tmp_path, env, timeout_seconds=40) as local:
        h1, h2, h3 = local.helpers
        with QueryClient(endpoints(local.network_file), local.identity, timeout=60) as client:
            # 1: killed mid-query.
            query_id = _start(client, local, site, data)
            fault = wait_for_event(h1.log, "worker_fault")
            victim = fault["pid"]
            assert fault["worker"] == "w0" and victim in workers_of(h1.pid)
            _stopped(victim)
            os.kill(victim, signal.SIGKILL)
            reason = _failed(client, query_id)
            assert f"H1's cluster worker w0 (ray::{WORKER_NAME}, pid {victim})" in reason
            assert "died" in reason
            assert _refunded(local, site, query_id)["spent_by_helper"] == [0, 0, 0]
            _replaced(h1.pid, victim)
            _exact_query(client, local, site, data)  # 2

            # 3: frozen, and nobody kills it: H3 gives up on it after its allowance and replaces it.
            query_id = client.create(query_params(_binding(site), CONFIG, no_noise=True))
            client.upload(query_id, _uploads(local, site, data))
            frozen = wait_for_event(h3.log, "worker_fault")["pid"]
            assert frozen in workers_of(h3.pid)
            _stopped(frozen)
            _failed(client, query_id)
            gave_up = wait_for_event(h3.log, "worker_failed")
            assert gave_up["worker"] == "w0" and gave_up["pid"] == frozen and gave_up["kind"] == "no answer"
            assert not log_events(h1.log, "worker_fault")[1:]  # H1's failpoint fired once, at query 1

            # 4: started at once, while Ray still restarts H3's w0 (H3 waits for it to answer before
            # it decrypts); then H2's w0 dies at its aggregation; its triple's peers at H1 and H3 are
            # ended too.
            query_id = _start(client, local, site, data)
            reason = _failed(client, query_id)
            why = f"; the query failed: {reason}"
            fault = wait_for_event(h2.log, "worker_fault", deadline=30, context=why)
            assert fault["worker"] == "w0" and fault["action"] == "kill"
            # Whoever notices first fails it everywhere: H2 (its worker died), or H1's or H3's w0,
            # whose message to H2's w0 broke off.
            died = f"H2's cluster worker w0 (ray::{WORKER_NAME}, pid {fault['pid']})"
            broke = "worker w0 failed in the query" in reason and "to H2 failed" in reason
            assert (died in reason and "during query" in reason) or broke, reason
            _refunded(local, site, query_id)
            # H1's and H3's triples w0 and w1 were ended: only query 2 ran to its end there
            assert [len(log_events(h.log, "workers_queried")) for h in (h1, h3)] == [1, 1]
            _replaced(h2.pid, fault["pid"])
            _replaced(h3.pid, frozen)
            _exact_query(client, local, site, data)  # 5

            # 6: H1's w0 dies mid-query, at its cap, while its sibling w1 and its triple wait for it.
            query_id = _start(client, local, site, data)
            reason = _failed(client, query_id)
            why = f"; the query failed: {reason}"
            fault = wait_for_event(h1.log, "worker_fault", 2, deadline=30, context=why)
            assert (fault["worker"], fault["action"], fault["phase"]) == ("w0", "kill", "cap")
            # Whoever notices first fails it everywhere: H1 (its worker died), or a peer whose w0
            # could not send to H1's w0.
            died = f"H1's cluster worker w0 (ray::{WORKER_NAME}, pid {fault['pid']})"
            assert (died in reason and "during query" in reason) or "failed in the query" in reason, reason
            _refunded(local, site, query_id)
            # no helper's workers finished it: they did queries 2 and 5 only
            assert [len(log_events(h.log, "workers_queried")) for h in (h1, h2, h3)] == [2, 2, 2]
            _replaced(h1.pid, fault["pid"])
            _exact_query(client, local, site, data)  # 7
