"""Faults and abuse against three real helper processes (docs/reliability.md has the table).

kill -9 and SIGSTOP at chosen points of a query (``IPA_FAILPOINT``), stalled
and idle upload streams from raw gRPC clients, and results fetched after
restarts with ``ipa fetch``. Deadlines are configured small, so each case
takes a few seconds.
"""

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import grpc
import pytest

from ipa.attribution.config import QueryConfig
from ipa.crypto.binding import Binding
from ipa.network import Network
from ipa.synthetic import generate
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.local_network import LocalNetwork
from ipa_client.query_client import QueryClient, QueryFailedError, endpoints, query_params
from ipa_rpc.v1 import budget_pb2, budget_pb2_grpc, query_pb2, query_pb2_grpc

CONFIG = QueryConfig(num_breakdowns=4, cap=20, timestamp_bits=20)
EVENTS = generate(1000, seed=21, num_breakdowns=4)
SETTINGS = {
    "timeout_seconds": 3,
    "retry_seconds": 0.2,
    "upload_idle_seconds": 1,
    "max_uploads": 2,
}


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    with LocalNetwork(tmp_path_factory.mktemp("faults"), allow_unnoised=False, **SETTINGS) as local:
        yield local


def binding(site):
    return Binding(site=site, report_collector="default", epoch=5, match_key_provider="mkp")


def batches(network, site):
    net = Network.load(network.network_file)
    rc = ReportCollector(net, binding(site), CONFIG)
    rc.add_events(EVENTS, simulate_user_agents(EVENTS, net, binding(site)))
    return rc.uploads()


def identity(network):
    return str(network.directory / "collectors" / "default.toml")


def ipa(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "ipa_client.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def settled_budget(network, site, query_id, deadline=60.0):
    """The budget once every helper's ledger has decided the query (committed or refunded)."""
    end = time.monotonic() + deadline
    while True:
        done = ipa(
            "budget", "--network", str(network.network_file), "--identity", identity(network),
            "--site", site, "--epoch", "5", "--wait", "0",
        )  # fmt: skip
        if done.returncode != 0:  # a helper just resumed or restarted: ask again
            assert time.monotonic() < end, done.stderr
            time.sleep(0.2)
            continue
        state = json.loads(done.stdout)
        spends = state["spent_by_helper"]
        mine = [q for q in state["queries"] if q["query_id"] == query_id]
        if mine and mine[0]["state"] != "reserved" and len(set(spends)) == 1:
            return state
        if time.monotonic() > end:
            raise AssertionError(f"ledgers did not settle: {state}")
        time.sleep(0.2)


def fetch(network, query_id, state_dir, timeout=60):
    return ipa(
        "fetch", "--network", str(network.network_file), "--identity", identity(network),
        "--query-id", query_id,
        "--state-dir", str(state_dir), "--timeout", str(timeout),
    )  # fmt: skip


def start_query(network, site, client, uploads):
    query_id = client.create(query_params(binding(site), CONFIG, epsilon=1.0, delta=1e-9))
    threading.Thread(target=lambda: _quietly(client.upload, query_id, uploads), daemon=True).start()
    return query_id


def _quietly(call, *args):
    with contextlib.suppress(QueryFailedError):
        call(*args)


def write_receipt_for(client, query_id, network, state_dir):
    from ipa_client.receipts import write_receipt

    write_receipt(state_dir, query_id, network.network_file, client.tokens)


@pytest.mark.parametrize(
    ("point", "helper", "outcome"), [("computed", 1, "refunded"), ("voted", 2, "committed")]
)
def test_kill_9_at_a_chosen_point_then_restart_ends_in_agreement(network, tmp_path, point, helper, outcome):
    site = f"kill-{point}.example"
    uploads = batches(network, site)
    victim = network.helpers[helper]
    victim.stop()
    victim.start(env={"IPA_FAILPOINT": f"{point}:kill"})
    with QueryClient(endpoints(network.network_file), network.identity, timeout=20) as client:
        query_id = start_query(network, site, client, uploads)
        write_receipt_for(client, query_id, network, tmp_path)
        victim.process.wait(60)
        assert victim.process.returncode == -signal.SIGKILL
    victim.start()
    state = settled_budget(network, site, query_id)
    assert [q["state"] for q in state["queries"]] == [outcome]
    assert len(set(state["spent_by_helper"])) == 1
    assert (state["spent_by_helper"][0] > 0) == (outcome == "committed")
    done = fetch(network, query_id, tmp_path)
    if outcome == "committed":  # the restarted helper serves its share from disk
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["query_id"] == query_id
    else:
        assert done.returncode == 2 and "failed" in done.stderr


def test_a_helper_frozen_before_its_vote_commits_with_its_peers_when_it_resumes(network, tmp_path):
    site = "frozen.example"
    uploads = batches(network, site)
    victim = network.helpers[2]
    victim.stop()
    victim.start(env={"IPA_FAILPOINT": "computed:stop"})
    try:
        with QueryClient(endpoints(network.network_file), network.identity, timeout=20) as client:
            query_id = start_query(network, site, client, uploads)
            write_receipt_for(client, query_id, network, tmp_path)
            while b'"failpoint"' not in victim.log.read_bytes():
                time.sleep(0.05)
            time.sleep(SETTINGS["timeout_seconds"] + 1)  # the peers' deadline passes: they stay ready
            states = [client.helper_status(query_id, h).state for h in (0, 1)]
            assert states == [query_pb2.RUNNING] * 2
    finally:
        os.kill(victim.pid, signal.SIGCONT)
    state = settled_budget(network, site, query_id)
    assert [q["state"] for q in state["queries"]] == ["committed"]
    assert fetch(network, query_id, tmp_path).returncode == 0
    victim.stop()
    victim.start()


def test_a_stalled_upload_fails_the_query_everywhere_and_refunds(network):
    site = "stalled.example"
    uploads = batches(network, site)
    with QueryClient(endpoints(network.network_file), network.identity, timeout=20) as client:
        query_id = client.create(query_params(binding(site), CONFIG, epsilon=2.0, delta=1e-9))
        resume = threading.Event()

        def stalled(helper):
            yield query_pb2.UploadChunk(data=uploads[helper][:1000])
            resume.wait(30)  # one chunk, then nothing (the original failure: 80 s with ε reserved)

        calls = []
        for helper, channel in enumerate(client.channels):
            metadata = client.upload_metadata(query_id, helper)
            stub = query_pb2_grpc.QueryStub(channel)
            calls.append(stub.Upload.future(stalled(helper), metadata=metadata, timeout=30))
        for call in calls:
            with pytest.raises(grpc.RpcError):
                call.result()
        resume.set()
        with pytest.raises(QueryFailedError, match="no upload data for 1 s"):
            client.wait(query_id, deadline=30)
    state = settled_budget(network, site, query_id)
    assert state["spent_by_helper"] == [0.0, 0.0, 0.0]


def test_idle_streams_starve_nobody(network):
    site = "idle.example"
    h1 = network.helpers[0]
    endpoint = endpoints(network.network_file)[0]
    credentials = grpc.ssl_channel_credentials(root_certificates=endpoint.cert)
    channel = grpc.secure_channel(
        endpoint.address, credentials, options=[("grpc.ssl_target_name_override", "ipa-helper-1")]
    )
    stub = query_pb2_grpc.QueryStub(channel)
    hold = threading.Event()

    def silent():
        hold.wait(30)
        yield query_pb2.UploadChunk()

    try:
        # 24 streams without credentials (more than the server's 16 threads): each is
        # refused before the helper reads anything, so none holds a thread.
        anonymous = [stub.Upload.future(silent(), timeout=30) for _ in range(24)]
        for call in anonymous:
            with pytest.raises(grpc.RpcError) as refused:
                call.result()
            # without a collector certificate (TLS refuses it) or without the metadata
            assert refused.value.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE)
        # An authenticated collector holds at most max_uploads streams open, each only
        # until its idle deadline.
        with QueryClient(endpoints(network.network_file), network.identity, timeout=20) as client:
            ids = [client.create(query_params(binding(site), CONFIG, epsilon=1.0)) for _ in range(3)]
            meta = [client.upload_metadata(q, 0) for q in ids]
            stub = query_pb2_grpc.QueryStub(client.channels[0])  # with the collector's certificate
            held = [stub.Upload.future(silent(), metadata=m, timeout=30) for m in meta[:2]]
            time.sleep(0.3)
            with pytest.raises(grpc.RpcError) as busy:
                stub.Upload(silent(), metadata=meta[2], timeout=30)
            assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "at most 2 uploads" in busy.value.details()
            # Meanwhile status, budget and new queries are served.
            assert client.helper_status(ids[0], 0).state == query_pb2.AWAITING_UPLOAD
            status = budget_pb2_grpc.BudgetStub(client.channels[0]).Inspect(
                budget_pb2.BudgetRequest(site=site, epoch=5), timeout=5
            )
            assert status.spent > 0  # three queries reserved
            client.create(query_params(binding(site), CONFIG, epsilon=1.0))
            for call in held:
                with pytest.raises(grpc.RpcError):
                    call.result()  # cut by the idle deadline
    finally:
        hold.set()
        channel.close()
    assert h1.process.poll() is None


def test_a_result_survives_restarts_of_all_helpers_and_ipa_fetch_returns_it(network, tmp_path):
    events = tmp_path / "events.csv"
    made = ipa("gen-events", "--events", "300", "--seed", "3", "--out", str(events), "--single-site")
    assert made.returncode == 0
    state_dir = tmp_path / "state"
    done = ipa(
        "query", "--network", str(network.network_file), "--identity", identity(network),
        "--input", str(events), "--breakdowns", "4",
        "--cap", "10", "--site", "fetch.example", "--epoch", "5", "--epsilon", "1",
        "--state-dir", str(state_dir),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    released = json.loads(done.stdout)
    receipt = state_dir / "receipts" / f"{released['query_id']}.json"
    assert receipt.stat().st_mode & 0o777 == 0o600
    for helper in network.helpers:
        helper.stop()
        helper.start()
    for index in (1, 2, 3):
        share = network.directory / f"data/helper{index}/results/{released['query_id']}.share"
        assert share.stat().st_mode & 0o777 == 0o600
    fetched = fetch(network, released["query_id"], state_dir)
    assert fetched.returncode == 0, fetched.stderr
    again = json.loads(fetched.stdout)
    assert again["command"] == "fetch"
    assert (again["query_id"], again["sums"]) == (released["query_id"], released["sums"])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_kill_9_at_a_random_moment_then_restart_ends_in_agreement(network, tmp_path, seed):
    """The issue's acceptance test: any helper, any moment (seeded, so a failure can be replayed)."""
    rng = random.Random(seed)
    site = f"random-{seed}.example"
    uploads = batches(network, site)
    victim = network.helpers[rng.randrange(3)]
    with QueryClient(endpoints(network.network_file), network.identity, timeout=20) as client:
        query_id = start_query(network, site, client, uploads)
        write_receipt_for(client, query_id, network, tmp_path)
        time.sleep(rng.uniform(0.0, 2.0))  # a query here takes about 1-2 s
        victim.kill()
    victim.start()
    state = settled_budget(network, site, query_id)
    (spend,) = [q["state"] for q in state["queries"] if q["query_id"] == query_id]
    done = fetch(network, query_id, tmp_path)
    if spend == "committed":
        assert len(set(state["spent_by_helper"])) == 1 and state["spent_by_helper"][0] > 0
        assert done.returncode == 0, done.stderr
    else:
        assert spend == "refunded" and state["spent_by_helper"] == [0.0] * 3
        assert done.returncode == 2
