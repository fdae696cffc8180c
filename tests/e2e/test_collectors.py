"""Report collectors against three real helper processes: who may create queries and see budgets.

The network has two collectors: ``ads`` (authorised by shop.example) and
``news`` (by news.example). Every refusal must come before any budget moves.
"""

import json
import subprocess
import sys

import grpc
import pytest

from ipa.attribution.config import QueryConfig
from ipa.certs import common_name, issue_collector, make_ca
from ipa.crypto.binding import Binding
from ipa.network import Network
from ipa.synthetic import generate
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.identity import Identity
from ipa_client.local_network import LocalNetwork, collector_identity
from ipa_client.query_client import QueryClient, QueryFailedError, endpoints, query_params
from ipa_rpc.v1 import budget_pb2, budget_pb2_grpc, query_pb2, query_pb2_grpc

CONFIG = QueryConfig(num_breakdowns=4, cap=20, timestamp_bits=20)
SHOP = "shop.example"


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    collectors = {"ads": [SHOP], "news": ["news.example"]}
    directory = tmp_path_factory.mktemp("collectors")
    with LocalNetwork(directory, allow_unnoised=False, timeout_seconds=5, collectors=collectors) as local:
        yield local


def binding(collector: str, site: str = SHOP) -> Binding:
    return Binding(site=site, report_collector=collector, epoch=1, match_key_provider="mkp")


def params(collector: str, site: str = SHOP, epsilon: float = 1.0) -> query_pb2.QueryParams:
    return query_params(binding(collector, site), CONFIG, epsilon=epsilon)


def client(network, name: str) -> QueryClient:
    return QueryClient(endpoints(network.network_file), collector_identity(network.directory, name))


def budget(network, identity: str, site: str = SHOP) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            *(sys.executable, "-m", "ipa_client.cli", "budget"),
            *("--network", str(network.network_file), "--site", site, "--epoch", "1"),
            *("--identity", str(network.directory / "collectors" / f"{identity}.toml")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def spent(network, site: str = SHOP) -> float:
    done = budget(network, "ads" if site == SHOP else "news", site)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["spent"]


def raw_channel(network, helper: int, cert: bytes | None = None, key: bytes | None = None) -> grpc.Channel:
    """A TLS channel to helper ``helper`` (0, 1, 2), with the client certificate given (or none)."""
    endpoint = endpoints(network.network_file)[helper]
    credentials = grpc.ssl_channel_credentials(
        root_certificates=endpoint.cert, private_key=key, certificate_chain=cert
    )
    options = [("grpc.ssl_target_name_override", common_name(helper + 1))]
    return grpc.secure_channel(endpoint.address, credentials, options=options)


def refused(channel: grpc.Channel) -> list[grpc.RpcError]:
    """Try CreateQuery at the channel and Budget.Inspect; return both errors."""
    errors = []
    calls = [
        lambda: query_pb2_grpc.QueryStub(channel).CreateQuery(
            query_pb2.CreateQueryRequest(params=params("ads"), token_hashes=[bytes(32)] * 3), timeout=10
        ),
        lambda: budget_pb2_grpc.BudgetStub(channel).Inspect(
            budget_pb2.BudgetRequest(site=SHOP, epoch=1), timeout=10
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as error:
            call()
        errors.append(error.value)
    channel.close()
    return errors


def test_the_authorised_collector_runs_a_query_and_sees_its_budget(network):
    events = generate(300, seed=5, num_breakdowns=4)
    net = Network.load(network.network_file)
    collector = ReportCollector(net, binding("ads"), CONFIG)
    collector.add_events(events, simulate_user_agents(events, net, binding("ads")))
    before = spent(network)
    with client(network, "ads") as c:
        collector.submit(c, epsilon=1.0)
    assert spent(network) == pytest.approx(before + 1.0)


def test_a_client_without_a_certificate_is_refused_at_the_handshake(network):
    before = spent(network)
    for error in refused(raw_channel(network, 0)):
        assert error.code() == grpc.StatusCode.UNAVAILABLE  # no TLS session without a client certificate
    assert spent(network) == before


def test_a_certificate_of_another_ca_is_refused(network):
    ca_cert, ca_key = make_ca()
    cert, key = issue_collector(ca_cert, ca_key, "ads")  # the right name, the wrong issuer
    before = spent(network)
    for error in refused(raw_channel(network, 0, cert, key)):
        assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert spent(network) == before


def test_a_certificate_of_the_network_ca_unknown_to_the_helpers_is_refused(network):
    ca = network.directory / "ca"
    cert, key = issue_collector(
        ca.with_suffix(".pem").read_bytes(), ca.with_suffix(".key").read_bytes(), "ads"
    )
    before = spent(network)
    for helper in range(3):
        for error in refused(raw_channel(network, helper, cert, key)):
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "not one of this helper's report collectors" in error.details()
    unknown = QueryClient(endpoints(network.network_file), Identity("ads", cert, key))
    with unknown, pytest.raises(QueryFailedError, match="not one of this helper's report collectors"):
        unknown.create(params("ads"))
    assert spent(network) == before


def test_a_collector_is_refused_for_a_site_that_did_not_authorise_it(network):
    before = spent(network)
    with client(network, "news") as c, pytest.raises(QueryFailedError, match=r"'news' is not authorised"):
        c.create(params("news"))
    assert spent(network) == before


def test_reports_bound_to_another_collector_are_refused(network):
    before = spent(network)
    with (
        client(network, "ads") as c,
        pytest.raises(QueryFailedError, match="bound to report collector 'news', but the caller is 'ads'"),
    ):
        c.create(params("news"))
    assert spent(network) == before


def test_budgets_are_shown_only_to_the_sites_collectors(network):
    done = budget(network, "news", SHOP)
    assert done.returncode == 2
    assert "'news' is not authorised for site 'shop.example'" in done.stderr
    assert "query" not in done.stdout


def test_another_collector_cannot_touch_a_query_even_with_its_tokens(network):
    with client(network, "ads") as owner, client(network, "news") as other:
        query_id = owner.create(params("ads", epsilon=0.5))
        other._tokens = owner._tokens  # even a leaked token does not make "news" the query's collector
        with pytest.raises(QueryFailedError, match="belongs to another report collector"):
            other.results(query_id)
        with pytest.raises(QueryFailedError, match="belongs to another report collector"):
            other.wait(query_id)
        other.cancel(query_id)  # refused quietly: the query is still waiting for its upload
        assert {s.state for s in owner.status(query_id)} == {query_pb2.AWAITING_UPLOAD}
        owner.cancel(query_id)
