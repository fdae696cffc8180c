"""Limits and unreachable helpers against three real helper processes, with raw gRPC clients.

Each test reproduces a failure that was observed: results too large to return
admitted and charged, unbounded pending queries and uploads, a second helper
sharing the first one's ports, a dead helper reported as a refusal after a
minute, disagreeing ledgers reported as agreeing, an empty query refused.
"""

import contextlib
import hashlib
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time

import grpc
import pytest

from ipa.attribution.config import QueryConfig
from ipa.crypto.binding import Binding
from ipa.dp.accounting import EpochBudget, query_charge_units
from ipa.events import write_csv
from ipa.network import Network
from ipa.reports.decode import batch_head_length, batch_size
from ipa.reports.layout import QUERY_TAIL
from ipa.synthetic import generate
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.local_network import LocalNetwork
from ipa_client.query_client import (
    HelperUnreachableError,
    QueryClient,
    endpoints,
    query_params,
    upload_digest,
)
from ipa_helper.ledger import BudgetLedger
from ipa_rpc import CHUNK_BYTES, PARAMS_DIGEST_KEY, QUERY_ID_KEY, TOKEN_KEY
from ipa_rpc.v1 import query_pb2, query_pb2_grpc

CONFIG = QueryConfig(num_breakdowns=4, cap=20, timestamp_bits=20)
EVENTS = generate(300, seed=5, num_breakdowns=4)
MAX_ROWS = 5000


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    local = LocalNetwork(
        tmp_path_factory.mktemp("limits"), timeout_seconds=60, max_rows=MAX_ROWS, max_queries=3
    )
    h3 = local.directory / "helper3.toml"  # H3 holds fewer queries than H1 and H2: its refusal travels
    h3.write_text(h3.read_text().replace("max_queries = 3", "max_queries = 2"))
    with local:
        yield local


def binding(site: str) -> Binding:
    return Binding(site=site, report_collector="default", epoch=1, match_key_provider="mkp")


def ipa(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ipa_client.cli", *args], capture_output=True, text=True, timeout=120
    )


def identity(network) -> str:
    return str(network.directory / "collectors" / "default.toml")


def budget(network, site: str, *extra: str) -> subprocess.CompletedProcess:
    identity = str(network.directory / "collectors" / "default.toml")
    return ipa(
        "budget", "--network", str(network.network_file), "--identity", identity, "--site", site,
        "--epoch", "1", *extra,
    )  # fmt: skip


class Raw:
    """A collector speaking raw gRPC: its own tokens, its own upload streams."""

    def __init__(self, network):
        self.client = QueryClient(endpoints(network.network_file), network.identity)
        self.stubs = [query_pb2_grpc.QueryStub(c) for c in self.client.channels]
        self.tokens = [secrets.token_bytes(32) for _ in range(3)]
        self.digests: dict[str, bytes] = {}

    def create(self, params) -> str:
        hashes = [hashlib.sha256(t).digest() for t in self.tokens]
        request = query_pb2.CreateQueryRequest(params=params, token_hashes=hashes)
        query_id = self.stubs[0].CreateQuery(request, timeout=30).query_id
        self.digests[query_id] = upload_digest(params, query_id)
        return query_id

    def upload(self, helper: int, query_id: str, chunks) -> None:
        def stream():
            first = True
            for data in chunks:
                token = self.tokens[helper] if first else b""
                yield query_pb2.UploadChunk(query_id=query_id if first else "", token=token, data=data)
                first = False

        metadata = (
            (QUERY_ID_KEY, query_id),
            (TOKEN_KEY, self.tokens[helper].hex()),
            (PARAMS_DIGEST_KEY, self.digests[query_id].hex()),
        )
        self.stubs[helper].Upload(stream(), timeout=30, metadata=metadata)

    def status(self, helper: int, query_id: str) -> query_pb2.QueryStatus:
        ref = query_pb2.QueryRef(query_id=query_id, token=self.tokens[helper])
        return self.stubs[helper].GetStatus(ref, timeout=30)

    def cancel(self, query_id: str) -> None:
        for helper, stub in enumerate(self.stubs):
            stub.Cancel(query_pb2.QueryRef(query_id=query_id, token=self.tokens[helper]), timeout=30)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def raw(network):
    client = Raw(network)
    yield client
    client.close()


def batches(network, site: str) -> tuple[bytes, bytes, bytes]:
    net = Network.load(network.network_file)
    collector = ReportCollector(net, binding(site), CONFIG)
    collector.add_events(EVENTS, simulate_user_agents(EVENTS, net, binding(site)))
    return collector.uploads()


def wait_state(raw: Raw, helper: int, query_id: str, state: int) -> query_pb2.QueryStatus:
    for _ in range(600):
        status = raw.status(helper, query_id)
        if status.state == state:
            return status
        time.sleep(0.05)
    raise AssertionError(f"H{helper + 1} did not reach state {state}: {status}")


# --- 5. admission: results that cannot be returned --------------------------------------


@pytest.mark.parametrize("bits", [20, 31])
def test_a_result_too_large_to_return_is_refused_before_any_budget(network, raw, bits):
    # 2^20 breakdowns were admitted and charged, then every GetResults failed (8 MiB); 2^31 too.
    site = f"huge{bits}.example"
    config = QueryConfig(num_breakdowns=1 << bits, cap=1, breakdown_bits=bits, timestamp_bits=20)
    with pytest.raises(grpc.RpcError) as refused:
        raw.create(query_params(binding(site), config, epsilon=1.0))
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    expected = f"num_breakdowns {1 << bits} exceeds this helper's max_breakdowns (65536)"
    assert expected in refused.value.details()
    state = json.loads(budget(network, site).stdout)
    assert state["spent_by_helper"] == [0.0, 0.0, 0.0] and state["queries"] == []


# --- 6. resources: pending queries and uploads ------------------------------------------


def test_a_full_helper_refuses_new_queries_with_resource_exhausted_and_charges_nothing(network, raw):
    site = "full.example"
    pending = [raw.create(query_params(binding(site), CONFIG, epsilon=1.0)) for _ in range(2)]
    try:
        with pytest.raises(grpc.RpcError) as refused:
            raw.create(query_params(binding(site), CONFIG, epsilon=1.0))
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        expected = "H3: this helper holds 2 queries that have not ended, its max_queries"
        assert expected in refused.value.details()
        done = budget(network, site)
        assert done.returncode == 0, done.stderr  # refunded at H1 and H2, never reserved at H3: they agree
        charge = query_charge_units(1.0, 1e-9, CONFIG.cap)  # two ε = 1 compose in ρ: ε ≈ 1.44, not 2
        assert json.loads(done.stdout)["rho"]["spent_by_helper"] == [2 * charge] * 3
    finally:
        for query_id in pending:
            raw.cancel(query_id)
    admitted = raw.create(query_params(binding(site), CONFIG, epsilon=1.0))  # a slot is free again
    raw.cancel(admitted)
    assert json.loads(budget(network, site).stdout)["spent"] == 0.0


def junk(count: int, drawn: list[int]):
    for k in range(count):
        drawn.append(k)
        yield bytes(CHUNK_BYTES)


def test_an_upload_declaring_too_many_reports_is_refused_at_its_first_chunk(network, raw):
    # A bogus upload used to be stored whole (and decoded at ~5x its size) before its count was checked.
    site = "toomany.example"
    query_id = raw.create(query_params(binding(site), CONFIG, epsilon=1.0))
    header = bytearray(batches(network, site)[0])
    header[34:38] = (1_000_000).to_bytes(4, "little")  # n, in the batch header
    drawn: list[int] = []
    with pytest.raises(grpc.RpcError) as refused:
        raw.upload(0, query_id, itertools.chain([bytes(header)], junk(64, drawn)))
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"1000000 reports, more than this helper's max_rows ({MAX_ROWS})" in refused.value.details()
    assert len(drawn) < 32  # refused at the header, long before the 64 MiB were sent
    for helper in (0, 1, 2):  # the query fails everywhere, and its ε comes back
        assert "max_rows" in wait_state(raw, helper, query_id, query_pb2.FAILED).error
    assert json.loads(budget(network, site).stdout)["spent"] == 0.0


def test_an_upload_longer_than_its_header_declares_is_refused_as_soon_as_it_is(network, raw):
    site = "long.example"
    query_id = raw.create(query_params(binding(site), CONFIG, no_noise=True))
    batch = batches(network, site)[1]
    drawn: list[int] = []
    with pytest.raises(grpc.RpcError) as refused:
        raw.upload(1, query_id, itertools.chain([batch], junk(64, drawn)))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"longer than the {len(batch)} bytes its header declares" in refused.value.details()
    assert len(drawn) < 32
    wait_state(raw, 0, query_id, query_pb2.FAILED)


# --- 7. a second helper on the same ports -------------------------------------------------


def test_a_second_helper_on_taken_ports_exits_non_zero_and_leaves_the_first_alone(network, raw):
    site = "twice.example"
    query_id = raw.create(query_params(binding(site), CONFIG, epsilon=1.0))  # reserved everywhere
    try:
        config = network.directory / "helper1.toml"
        second = subprocess.run(
            [sys.executable, "-m", "ipa_helper.server", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2
        listen = Network.load(network.network_file).helpers[0].extra["address"]
        expected = f"cannot listen on {listen} (listen, for report collectors): the port is in use"
        assert expected in second.stderr
        assert '"listening"' not in second.stderr
        # it never opened the ledger, so the first helper's reservation was not "recovered" (refunded)
        state = json.loads(budget(network, site).stdout)
        charge = query_charge_units(1.0, 1e-9, CONFIG.cap)
        assert state["queries"] == [
            {"query_id": query_id, "epsilon": 1.0, "rho_units": charge, "state": "reserved"}
        ]
        assert state["spent_by_helper"] == pytest.approx([1.0, 1.0, 1.0])  # the ε its ρ is worth
        assert raw.status(0, query_id).state == query_pb2.AWAITING_UPLOAD  # the first one still serves
    finally:
        raw.cancel(query_id)


# --- 8. a helper that cannot be reached ---------------------------------------------------


def test_a_dead_helper_is_named_with_the_reason_not_reported_as_a_refusal(network, raw, tmp_path):
    # With H3 down, `ipa query` waited 61 s and printed "H1 refused the query: Deadline Exceeded".
    events = tmp_path / "events.csv"
    write_csv(EVENTS, events)
    address = Network.load(network.network_file).helpers[2].extra["address"]
    network.helpers[2].kill()
    try:
        done = ipa(
            "query", "--network", str(network.network_file), "--identity", identity(network),
            "--input", str(events), "--breakdowns", "4",
            "--cap", "20", "--site", "dead.example", "--epoch", "1", "--no-noise",
        )  # fmt: skip
        assert done.returncode == 2
        assert f"H3 ({address}) cannot be reached: connection refused" in done.stderr
        assert "refused the query" not in done.stderr
        with pytest.raises(grpc.RpcError) as unavailable:  # H1 itself names the peer it cannot reach
            raw.create(query_params(binding("dead.example"), CONFIG, epsilon=1.0))
        assert unavailable.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "H3 cannot be reached from H1: connection refused" in unavailable.value.details()
        inspect = budget(network, "dead.example", "--wait", "0")
        assert inspect.returncode == 2 and "H3 did not answer: connection refused" in inspect.stderr
    finally:
        network.helpers[2].start()
    assert json.loads(budget(network, "dead.example").stdout)["spent"] == 0.0


def test_a_helper_presenting_another_certificate_is_named(network, tmp_path):
    for name in ("network.toml", "helper1.pem", "helper2.pem", "helper3.pem"):
        shutil.copy(network.directory / name, tmp_path / name)
    shutil.copy(network.directory / "helper1.pem", tmp_path / "helper2.pem")  # not H2's certificate
    unreachable = r"H2 \(.*\) cannot be reached: TLS handshake failed"
    with QueryClient(endpoints(tmp_path / "network.toml"), network.identity) as client, pytest.raises(
        HelperUnreachableError, match=unreachable
    ):
        client.create(query_params(binding("tls.example"), CONFIG, no_noise=True))


def test_a_frozen_helper_is_named_after_the_connect_timeout(network):
    os.kill(network.helpers[2].pid, signal.SIGSTOP)
    try:
        unreachable = r"H3 \(.*\) cannot be reached: no answer within 1 s"
        client = QueryClient(endpoints(network.network_file), network.identity, connect_timeout=1.0)
        with client, pytest.raises(
            HelperUnreachableError, match=unreachable
        ):
            client.create(query_params(binding("frozen.example"), CONFIG, no_noise=True))
    finally:
        os.kill(network.helpers[2].pid, signal.SIGCONT)


# --- 9. ledgers that disagree ----------------------------------------------------------------


def test_budget_says_when_the_ledgers_disagree_and_exits_non_zero(network):
    site = "split.example"
    network.helpers[2].stop()
    budget_ = EpochBudget.of(10.0, 1e-9)
    ledger = BudgetLedger(network.directory / "data" / "helper3" / "budget.sqlite", budget_.units)
    try:  # H3 alone has a committed spend: what a lost commit message at H1 and H2 would leave
        ledger.admit("f" * 32, site, 1, 2.0, query_charge_units(2.0, 1e-9, 20))
        ledger.commit("f" * 32)
    finally:
        ledger.close()
        network.helpers[2].start()
    done = budget(network, site, "--wait", "0")
    assert done.returncode == 3
    assert f"ledgers disagree: query {'f' * 32} is absent at H1, absent at H2, committed at H3" in done.stderr
    state = json.loads(done.stdout)
    assert state["agree"] is False and state["spent_by_helper"] == pytest.approx([0.0, 0.0, 2.0])
    assert state["disagreements"] == [{"query_id": "f" * 32, "states": ["absent", "absent", "committed"]}]


# --- 10. an empty query -----------------------------------------------------------------------


def test_an_empty_query_is_answered_everywhere_and_charged(network, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp,match_key,is_trigger,breakdown_key,trigger_value,constraint_id\n")
    query = ["--input", str(empty), "--breakdowns", "4", "--cap", "20"]
    ask = ["query", "--network", str(network.network_file), "--identity", identity(network), *query]
    ask += ["--site", "empty.example", "--epoch", "1"]
    exact = ipa(*ask, "--no-noise")
    assert exact.returncode == 0, exact.stderr
    assert json.loads(exact.stdout)["sums"] == [0, 0, 0, 0]
    assert json.loads(ipa("reference", *query).stdout)["sums"] == [0, 0, 0, 0]
    assert json.loads(ipa("simulate", *query, "--no-noise").stdout)["sums"] == [0, 0, 0, 0]
    noised = ipa(*ask, "--epsilon", "1")
    assert noised.returncode == 0, noised.stderr
    assert len(json.loads(noised.stdout)["sums"]) == 4
    state = json.loads(budget(network, "empty.example").stdout)
    assert [(q["epsilon"], q["state"]) for q in state["queries"]] == [(1.0, "committed")]


def test_helpers_compare_report_counts_before_decoding(network, raw):
    # A bogus upload was decoded (about 5x its size in memory) before the helpers found that
    # their counts differ. H1's batch here declares 2000 reports and is the right length, but
    # nothing in it decrypts: the count mismatch is found first, so the decoder never runs.
    site = "count.example"
    good = batches(network, site)
    tail_end = batch_head_length(good[0])  # the fixed header, the sealed key and the query tail
    site_table = QUERY_TAIL.unpack_from(good[0], tail_end - QUERY_TAIL.size)[2]
    head = bytearray(good[0][: tail_end + site_table])
    head[34:38] = (2000).to_bytes(4, "little")  # n in the fixed header (ipa.reports.layout)
    _, length = batch_size(bytes(head))
    bogus = bytes(head) + secrets.token_bytes(length - len(head))
    query_id = raw.create(query_params(binding(site), CONFIG, no_noise=True))
    for helper, batch in enumerate((bogus, good[1], good[2])):
        with contextlib.suppress(grpc.RpcError):  # a peer may fail it while this upload streams
            raw.upload(helper, query_id, [batch])
    error = wait_state(raw, 0, query_id, query_pb2.FAILED).error
    counts = {f"(2000 and {len(EVENTS)})", f"({len(EVENTS)} and 2000)"}  # whichever helper spoke first
    assert any(f"different numbers of reports {c}" in error for c in counts), error
    assert "decrypt" not in error
