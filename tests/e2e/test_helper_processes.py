"""Three real helper processes on loopback with TLS: results, failures, recovery."""

import json
import subprocess
import time

import pytest
from cli_runner import ipa as run_ipa

from ipa.attribution.config import QueryConfig
from ipa.crypto.binding import Binding
from ipa.network import Network
from ipa.synthetic import generate
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.local_network import LocalNetwork, collector_identity
from ipa_client.query_client import QueryClient, QueryFailedError, endpoints, query_params
from ipa_rpc.v1 import query_pb2


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    with LocalNetwork(tmp_path_factory.mktemp("network"), timeout_seconds=5) as local:
        yield local.network_file, local.helpers


def ipa(*args: str) -> subprocess.CompletedProcess[str]:
    return run_ipa(*args, timeout=600)


def identity(network_file) -> str:
    return str(network_file.parent / "collectors" / "default.toml")


def test_ipa_query_equals_the_reference(network, tmp_path):
    network_file, _ = network
    events = tmp_path / "events.csv"
    made = ipa("gen-events", "--events", "3000", "--seed", "2", "--out", str(events), "--single-site")
    assert made.returncode == 0
    query = ["--input", str(events), "--breakdowns", "10", "--cap", "80", "--window", "86400"]
    done = ipa(
        "query",
        "--network",
        str(network_file),
        "--identity",
        identity(network_file),
        *query,
        "--site",
        "s.example",
        "--epoch",
        "4",
        "--no-noise",
    )
    assert done.returncode == 0, done.stderr
    released = json.loads(done.stdout)
    assert released["sums"] == json.loads(ipa("reference", *query).stdout)["sums"]
    assert len(released["query_id"]) == 32


def test_a_refused_query_exits_non_zero_with_the_reason(network, tmp_path):
    network_file, _ = network
    events = tmp_path / "events.csv"
    ipa("gen-events", "--events", "50", "--seed", "2", "--out", str(events), "--single-site")
    done = ipa(
        "query",
        "--network",
        str(network_file),
        "--identity",
        identity(network_file),
        "--input",
        str(events),
        "--breakdowns",
        "4",
        "--cap",
        "10",
        "--site",
        "s",
        "--epoch",
        "1",
        "--epsilon",
        "11",
    )
    assert done.returncode == 2
    assert "privacy budget exceeded" in done.stderr and "ε = 11" in done.stderr


def test_a_helper_killed_mid_query_fails_it_everywhere_and_the_next_query_runs(network):
    network_file, helpers = network
    config = QueryConfig(num_breakdowns=8, cap=100, timestamp_bits=20)
    binding = Binding(site="s.example", report_collector="default", epoch=2, match_key_provider="mkp")
    events = generate(20_000, seed=9, num_breakdowns=8)
    net = Network.load(network_file)
    collector = ReportCollector(net, binding, config)
    collector.add_events(events, simulate_user_agents(events, net, binding))
    batches = collector.uploads()
    with QueryClient(endpoints(network_file), collector_identity(network_file.parent)) as client:
        query_id = client.create(query_params(binding, config, no_noise=True))
        client.upload(query_id, batches)
        while client.status(query_id)[0].phase in ("awaiting_upload", "decrypt"):
            time.sleep(0.02)
        helpers[2].kill()
        with pytest.raises(QueryFailedError, match=r"H3|peer"):
            client.wait(query_id, deadline=60)
        for helper in (0, 1):  # the survivors fail it too, naming H3
            assert wait_final(client, query_id, helper).state == query_pb2.FAILED
            assert "H3" in client.helper_status(query_id, helper).error
    helpers[2].start()
    with QueryClient(endpoints(network_file), collector_identity(network_file.parent)) as client:
        _, sums = collector.submit(client, no_noise=True)
    assert sums.sum() > 0


def wait_final(client, query_id, helper):
    for _ in range(200):
        status = client.helper_status(query_id, helper)
        if status.state in (query_pb2.FAILED, query_pb2.COMPLETED, query_pb2.CANCELLED):
            return status
        time.sleep(0.05)
    raise AssertionError(f"H{helper + 1} did not end the query")
