"""Query lifecycle against three in-process helpers with TLS: refusals, bad uploads, access."""

import time

import grpc
import numpy as np
import pytest
from grpc_world import InProcessNetwork

from ipa.attribution.config import QueryConfig
from ipa.attribution.rows import presort_order
from ipa.certs import make_identity
from ipa.crypto.binding import Binding
from ipa.network import Network
from ipa.reference import attribute, attribute_query
from ipa.synthetic import generate
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.local_network import collector_identity
from ipa_client.query_client import QueryClient, QueryFailedError, endpoints, query_params
from ipa_rpc.v1 import peer_pb2, peer_pb2_grpc, query_pb2

CONFIG = QueryConfig(num_breakdowns=8, cap=50, window=86_400, max_events_per_user=16, timestamp_bits=20)
BINDING = Binding(site="shop.example", report_collector="default", epoch=7, match_key_provider="mkp")


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    world = InProcessNetwork(tmp_path_factory.mktemp("net"), timeout_seconds=10, max_upload_bytes=4 << 20)
    yield world
    world.close()


@pytest.fixture(scope="module")
def events():
    return generate(600, seed=4, num_breakdowns=8)


def collector(net, events, binding=BINDING):
    network = Network.load(net.network_file)
    rc = ReportCollector(network, binding, CONFIG)
    rc.add_events(events, simulate_user_agents(events, network, binding))
    return rc


def client(net):
    return QueryClient(endpoints(net.network_file), collector_identity(net.network_file.parent), timeout=20)


def upload_and_wait(c, query_id, batches):
    """A failure may surface at the upload (a peer failed first) or while waiting."""
    c.upload(query_id, batches)
    c.wait(query_id)


def test_a_query_releases_the_reference_sums(net, events):
    with client(net) as c:
        query_id, sums = collector(net, events).submit(c, no_noise=True)
        statuses = c.status(query_id)
    expected = attribute(events, num_breakdowns=8, cap=50, window=86_400, max_events_per_user=16)
    assert sums.tolist() == expected.tolist()
    assert [s.state for s in statuses] == [query_pb2.COMPLETED] * 3
    assert all(s.rows == len(events) and s.progress == 1.0 for s in statuses)


def test_another_collector_cannot_see_the_result(net, events):
    with client(net) as owner, client(net) as other:
        query_id, _ = collector(net, events).submit(owner, no_noise=True)
        with pytest.raises(QueryFailedError, match="not the collector"):
            other.results(query_id)
        with pytest.raises(Exception, match="not the collector"):
            other.status(query_id)


def test_reports_for_another_site_fail_the_query_everywhere(net, events):
    wrong = collector(
        net,
        events,
        Binding(site="other.example", report_collector="default", epoch=7, match_key_provider="mkp"),
    )
    with client(net) as c:
        query_id = c.create(query_params(BINDING, CONFIG, no_noise=True))
        with pytest.raises(QueryFailedError, match="wrong site"):
            upload_and_wait(c, query_id, wrong.uploads())
        statuses = _final(c, query_id)
    assert all(s.state == query_pb2.FAILED for s in statuses)


def test_garbage_and_oversize_uploads_are_refused(net, events):
    good = collector(net, events).uploads()
    with client(net) as c:
        query_id = c.create(query_params(BINDING, CONFIG, no_noise=True))
        with pytest.raises(QueryFailedError, match="not an upload batch"):
            upload_and_wait(c, query_id, [b"not a batch at all", good[1], good[2]])
        query_id = c.create(query_params(BINDING, CONFIG, no_noise=True))
        oversize = bytearray(good[1])  # a header declaring 10^5 reports: about 16 MB, over 4 MiB
        oversize[34:38] = (100_000).to_bytes(4, "little")
        with pytest.raises(QueryFailedError, match=r"more than this helper's max_upload_bytes \(4194304\)"):
            c.upload(query_id, [good[0], bytes(oversize), good[2]])
    with client(net) as c:  # the network still serves
        assert collector(net, events).submit(c, no_noise=True).sums.sum() > 0


def test_uploads_of_different_sizes_are_refused(net, events):
    small = collector(net, events.take(np.arange(100))).uploads()
    big = collector(net, events).uploads()
    with client(net) as c:
        query_id = c.create(query_params(BINDING, CONFIG, no_noise=True))
        with pytest.raises(QueryFailedError, match="different numbers of reports"):
            upload_and_wait(c, query_id, [big[0], small[1], big[2]])


def test_bad_parameters_are_refused_before_any_work(net):
    with client(net) as c:
        with pytest.raises(QueryFailedError, match="epsilon"):
            c.create(query_params(BINDING, CONFIG, no_noise=False, epsilon=-1))
        bad = query_params(BINDING, CONFIG, no_noise=True)
        bad.max_events_per_user = 6
        with pytest.raises(QueryFailedError, match="power of two"):
            c.create(bad)


def test_an_unknown_query_is_not_found(net):
    with client(net) as c, pytest.raises(QueryFailedError, match="unknown query"):
        c.results("no-such-query")


def test_only_the_leader_creates_queries(net):
    stub = net.helpers[1].helper  # H2
    with pytest.raises(Exception, match="leader"):
        stub.create_query(query_params(BINDING, CONFIG, no_noise=True), b"t")


def test_unnoised_release_is_refused_on_a_production_network(tmp_path, events):
    production = InProcessNetwork(tmp_path, allow_unnoised=False)
    try:
        with client(production) as c, pytest.raises(QueryFailedError, match="no unnoised results"):
            c.create(query_params(BINDING, CONFIG, no_noise=True))
    finally:
        production.close()


def _final(c, query_id):

    for _ in range(100):
        statuses = c.status(query_id)
        if all(s.state in (query_pb2.FAILED, query_pb2.CANCELLED, query_pb2.COMPLETED) for s in statuses):
            return statuses
        time.sleep(0.1)
    raise AssertionError("the query did not end on every helper")


def test_a_peer_with_a_foreign_certificate_is_refused(net):

    rogue_cert, rogue_key = make_identity(2, ["127.0.0.1"])  # right name, wrong key
    h1 = net.configs[0]
    credentials = grpc.ssl_channel_credentials(
        root_certificates=h1.tls_cert.read_bytes(), private_key=rogue_key, certificate_chain=rogue_cert
    )
    channel = grpc.secure_channel(
        h1.peer_listen, credentials, options=[("grpc.ssl_target_name_override", "ipa-helper-1")]
    )
    with pytest.raises(grpc.RpcError) as refused:
        peer_pb2_grpc.PeerStub(channel).Abort(peer_pb2.AbortRequest(query_id="x", reason="r"), timeout=5)
    channel.close()
    assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


def test_cancel_ends_the_query_everywhere_and_the_result_is_never_released(net, events):
    with client(net) as c:
        query_id = c.create(query_params(BINDING, CONFIG, no_noise=True))
        c.cancel(query_id)
        statuses = _final(c, query_id)
        assert statuses[0].state == query_pb2.CANCELLED  # H1 first, and it told its peers
        assert all("cancelled by the report collector" in s.error for s in statuses)
        with pytest.raises(QueryFailedError, match=r"cancelled|has ended"):
            c.upload(query_id, collector(net, events).uploads())
        with pytest.raises(QueryFailedError, match="no result"):
            c.results(query_id)


def test_with_drop_invalid_all_helpers_drop_the_same_reports_and_count_them(net, events):

    batches = list(collector(net, events).uploads())
    dropped = 7  # corrupt report 7's sealed match-key shares in H2's batch only
    header = 42 + 64 + 8 + 1 + len(BINDING.site)  # header, sealed batch key, query tail, site table
    sealed_offset = header + dropped * (29 + 64) + 29 + 5  # records before it, its clear head
    tampered = bytearray(batches[1])
    tampered[sealed_offset] ^= 0x01
    batches[1] = bytes(tampered)
    with client(net) as c:
        query_id = c.create(query_params(BINDING, CONFIG, no_noise=True, drop_invalid=True))
        c.upload(query_id, batches)
        statuses = c.wait(query_id)
        sums = c.results(query_id)
    assert [s.rows for s in statuses] == [len(events) - 1] * 3
    assert dict(statuses[1].invalid_reports) == {"DECRYPTION_FAILED": 1}
    assert dict(statuses[0].invalid_reports) == {}
    order = presort_order(events)
    kept = events.take(np.delete(order, dropped))
    assert sums.tolist() == attribute_query(kept, CONFIG).tolist()


def test_ended_queries_are_forgotten_after_the_retention_time(tmp_path, events):
    short = InProcessNetwork(tmp_path, retention_seconds=0.2)
    try:
        with client(short) as c:
            first, _ = collector(short, events).submit(c, no_noise=True)
            time.sleep(0.3)
            collector(short, events).submit(c, no_noise=True)  # preparing a query prunes old ones
            with pytest.raises(Exception, match="unknown query"):
                c.status(first)
    finally:
        short.close()
