"""Helpers spread over Ray: three real helper processes, each with a local Ray cluster of two workers.

Marked ``cluster``: each network starts three Ray clusters (about 5 s each on
an idle 2-core machine, a minute or more on a loaded one), so the file keeps to
two networks and a few queries.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipa.attribution.config import QueryConfig
from ipa.crypto.binding import Binding
from ipa.network import Network
from ipa.reference import attribute_query
from ipa.synthetic import generate
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.local_network import LocalNetwork, descendants
from ipa_client.query_client import QueryClient, QueryFailedError, endpoints, query_params
from ipa_helper.cluster import WORKER_NAME

pytestmark = [
    pytest.mark.cluster,
    # Opt-in until they are reliable: on this 2-core machine the local Ray clusters of three
    # helpers sometimes fail to start in time, and the fault test once lost the wrong worker
    # (README, Tests). Run them with IPA_CLUSTER_TESTS=1.
    pytest.mark.skipif(
        not os.environ.get("IPA_CLUSTER_TESTS"),
        reason="Ray cluster tests are opt-in (IPA_CLUSTER_TESTS=1): flaky on a 2-core machine",
    ),
]

WORKERS = 2
CONFIG = QueryConfig(num_breakdowns=4, cap=20, timestamp_bits=20)


def ipa(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ipa_client.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def log_events(log: Path, name: str) -> list[dict]:
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    return [e for e in map(json.loads, lines) if e.get("event") == name]


def workers_of(pid: int) -> list[int]:
    """The Ray worker actors below helper process ``pid`` (``ray::IpaWorker``, ``ray::IpaWorker.open()``)."""
    return [p for p in descendants(pid) if _comm(p).startswith(f"ray::{WORKER_NAME}")]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rindex(")") + 2]


def _alive(pid: int) -> bool:
    return _state(pid) not in ("", "Z")


@contextlib.contextmanager
def cluster_network(directory: Path, env: dict[int, dict[str, str]] | None = None, **settings: object):
    """Three helpers with two Ray workers each; afterwards, every process they started is gone."""
    local = LocalNetwork(directory, workers=WORKERS, **settings)
    started: list[int] = []
    try:
        for i, helper in enumerate(local.helpers):
            helper.start(timeout=240, env=(env or {}).get(i + 1))
        started = [p for h in local.helpers for p in descendants(h.pid or 0)]
        yield local
    finally:
        local.stop()
        end = time.monotonic() + 60
        while any(map(_alive, started)) and time.monotonic() < end:
            time.sleep(0.2)
        left = [p for p in started if _alive(p)]
        for pid in left:  # do not leak them into the rest of the run, but fail the test
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        assert not left, f"processes of the helpers' Ray clusters outlived them: {left}"


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    with cluster_network(tmp_path_factory.mktemp("cluster"), timeout_seconds=60) as local:
        yield local


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """Multi-site events over two weekly epochs."""
    path = tmp_path_factory.mktemp("events") / "events.csv"
    assert ipa("gen-events", "--events", "2000", "--seed", "8", "--out", str(path)).returncode == 0
    return path


def test_each_helper_runs_two_ray_workers_of_its_own(network):
    pids = []
    for helper in network.helpers:
        (started,) = log_events(helper.log, "cluster_started")
        assert started["workers"] == WORKERS and started["address"] == "local"
        workers = workers_of(helper.pid)
        assert sorted(workers) == sorted(int(p) for p in started["worker_pids"].split(","))
        pids += workers
    assert len(set(pids)) == 3 * WORKERS


@pytest.mark.parametrize(("site", "query_type"), [("news.example", "source"), ("shop.example", "trigger")])
def test_queries_over_ray_workers_equal_the_reference(network, events, site, query_type):
    query = ["--input", str(events), "--breakdowns", "16", "--cap", "300", "--window", "604800",
             "--site", site, "--query-type", query_type]  # fmt: skip
    done = ipa("query", "--network", str(network.network_file), "--identity",
               str(network.directory / "collectors" / "default.toml"), *query, "--epoch", "0-1",
               "--no-noise")  # fmt: skip
    assert done.returncode == 0, done.stderr
    released = json.loads(done.stdout)["sums"]
    assert released == json.loads(ipa("reference", *query).stdout)["sums"]
    assert sum(released) > 0
    for helper in network.helpers:  # the match keys were opened by both workers of every helper
        last = log_events(helper.log, "workers_opened")[-1]
        assert all(int(rows) > 0 for rows in last["rows"].split(","))


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


def _stopped_worker(helper_pid: int, deadline: float = 120.0) -> int:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        stopped = [p for p in workers_of(helper_pid) if _state(p) == "T"]
        if stopped:
            return stopped[0]
        time.sleep(0.1)
    raise AssertionError("no stopped worker of H1 appeared")


def _exact_query(client: QueryClient, local: LocalNetwork, site: str, data) -> None:
    query_id = client.create(query_params(_binding(site), CONFIG, no_noise=True))
    client.upload(query_id, _uploads(local, site, data))
    client.wait(query_id, poll=0.1, deadline=300)
    assert client.results(query_id).tolist() == attribute_query(data, CONFIG).tolist()


def _replaced(helper_pid: int, old: int, deadline: float = 120.0) -> None:
    """Wait until Ray has replaced worker ``old`` of the helper (its workers are back to W)."""
    end = time.monotonic() + deadline
    while (_alive(old) or len(workers_of(helper_pid)) < WORKERS) and time.monotonic() < end:
        time.sleep(0.2)
    assert not _alive(old) and len(workers_of(helper_pid)) == WORKERS


def test_worker_faults_fail_the_query_cleanly_and_the_helpers_keep_serving(tmp_path):
    """H1's worker w0 stops itself at the first query (IPA_FAILPOINT=worker:stop) and we kill -9 it;
    H3's w0 stops itself at the third and nobody kills it. Each time the query fails at all three
    helpers and is refunded, the worker is replaced, and the next query is exact."""
    site = "faults.example"
    data = generate(800, seed=4, num_breakdowns=CONFIG.num_breakdowns)
    env = {1: {"IPA_FAILPOINT": "worker:stop"}, 3: {"IPA_FAILPOINT": "worker:stop@3"}}
    with cluster_network(tmp_path, env, timeout_seconds=20) as local:
        h1, h3 = local.helpers[0], local.helpers[2]
        with QueryClient(endpoints(local.network_file), local.identity, timeout=60) as client:
            # 1: killed mid-query.
            query_id = client.create(query_params(_binding(site), CONFIG, epsilon=1.0, delta=1e-9))
            client.upload(query_id, _uploads(local, site, data))
            victim = _stopped_worker(h1.pid)
            os.kill(victim, signal.SIGKILL)
            with pytest.raises(QueryFailedError) as failed:
                client.wait(query_id, poll=0.1, deadline=120)
            assert f"worker w0 (ray::{WORKER_NAME}, pid {victim})" in str(failed.value)
            assert "died" in str(failed.value)
            state = _budget(local, site)
            (mine,) = [q for q in state["queries"] if q["query_id"] == query_id]
            assert mine["state"] == "refunded" and state["agree"]
            assert state["spent_by_helper"] == [0, 0, 0]
            _replaced(h1.pid, victim)
            _exact_query(client, local, site, data)  # 2

            # 3: frozen, and nobody kills it: H3 gives up on it after its allowance and replaces it.
            query_id = client.create(query_params(_binding(site), CONFIG, no_noise=True))
            client.upload(query_id, _uploads(local, site, data))
            frozen = _stopped_worker(h3.pid)
            with pytest.raises(QueryFailedError):
                client.wait(query_id, poll=0.1, deadline=120)
            end = time.monotonic() + 120
            while not log_events(h3.log, "worker_failed") and time.monotonic() < end:
                time.sleep(0.2)
            (gave_up,) = log_events(h3.log, "worker_failed")
            assert gave_up["worker"] == "w0" and gave_up["pid"] == frozen and gave_up["kind"] == "no answer"
            _replaced(h3.pid, frozen)
            _exact_query(client, local, site, data)  # 4
