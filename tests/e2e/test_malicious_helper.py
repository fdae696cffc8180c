"""A helper process that alters one MPC message: the other two abort, nothing is released, the ε is
refunded, and the helpers go on serving (``IPA_TAMPER=message:STEP``, a test-only switch of
``ipa-helper``). Also: a malicious-only network refuses semi-honest queries."""


import pytest

from ipa.attribution.config import QueryConfig
from ipa.crypto.binding import Binding
from ipa.network import Network
from ipa.synthetic import generate
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.local_network import LocalNetwork
from ipa_client.query_client import QueryClient, QueryFailedError, endpoints, query_params

CONFIG = QueryConfig(num_breakdowns=4, cap=20, timestamp_bits=20)
EVENTS = generate(120, seed=31, num_breakdowns=4, timestamp_bits=20)
SITE = "shop.example"


def binding(epoch):
    return Binding(site=SITE, report_collector="default", epoch=epoch, match_key_provider="mkp")


def uploads(network_file, epoch):
    net = Network.load(network_file)
    rc = ReportCollector(net, binding(epoch), CONFIG)
    rc.add_events(EVENTS, simulate_user_agents(EVENTS, net, binding(epoch)))
    return rc.uploads()


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    with LocalNetwork(tmp_path_factory.mktemp("malicious"), security="malicious", timeout_seconds=30) as net:
        yield net


def test_a_malicious_only_network_refuses_semi_honest_queries(local):
    params = query_params(binding(9), CONFIG, no_noise=True, security="semi-honest")
    client = QueryClient(endpoints(local.network_file), local.identity, timeout=60)
    with client, pytest.raises(QueryFailedError, match="semi-honest query is refused"):
        client.create(params)
