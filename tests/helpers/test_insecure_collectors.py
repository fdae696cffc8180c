"""On an --insecure development network the collector's claimed name is trusted, and only that."""

import pytest

from ipa.attribution.config import QueryConfig
from ipa.crypto.binding import Binding
from ipa_client.identity import Identity
from ipa_client.local_network import collector_identity, make_network
from ipa_client.query_client import QueryClient, QueryFailedError, endpoints, query_params
from ipa_helper.config import load_config
from ipa_helper.server import start

CONFIG = QueryConfig(num_breakdowns=2, cap=10)


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    directory = tmp_path_factory.mktemp("insecure")
    network_file = make_network(directory, collectors={"ads": ["shop.example"]}, timeout_seconds=5)
    helpers = [start(load_config(directory / f"helper{i}.toml"), insecure=True) for i in (1, 2, 3)]
    yield directory, network_file
    for running in helpers:
        running.stop(grace=None)


def params(collector: str, site: str = "shop.example"):
    binding = Binding(site=site, report_collector=collector, epoch=1)
    return query_params(binding, CONFIG, no_noise=True)


def test_a_configured_collector_is_served_for_its_sites_only(network):
    directory, network_file = network
    with QueryClient(endpoints(network_file), collector_identity(directory, "ads"), insecure=True) as client:
        client.cancel(client.create(params("ads")))
        with pytest.raises(QueryFailedError, match=r"'ads' is not authorised for site 'other\.example'"):
            client.create(params("ads", "other.example"))


def test_an_unknown_claimed_name_is_refused(network):
    _, network_file = network
    intruder = Identity("intruder", b"", b"")
    client = QueryClient(endpoints(network_file), intruder, insecure=True)
    with client, pytest.raises(QueryFailedError, match="unknown report collector 'intruder'"):
        client.create(params("intruder"))
