"""Cross-site queries over three real helper processes: source and trigger fanout, epoch spans."""

import json
import subprocess
import sys

import numpy as np
import pytest

from ipa.attribution.config import QueryConfig
from ipa.crypto.binding import Binding
from ipa.events import Events, read_csv
from ipa.network import Network
from ipa.reference import attribute_query
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.local_network import LocalNetwork
from ipa_client.query_client import QueryClient, QueryFailedError, endpoints


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    with LocalNetwork(tmp_path_factory.mktemp("cross-site"), timeout_seconds=10) as local:
        yield local


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """Multi-site events over two weekly epochs (timestamps in [0, 2**20) seconds)."""
    path = tmp_path_factory.mktemp("events") / "events.csv"
    assert ipa("gen-events", "--events", "2500", "--seed", "5", "--out", str(path)).returncode == 0
    return path


def identity(network) -> str:
    return str(network.network_file.parent / "collectors" / "default.toml")


def ipa(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ipa_client.cli", *args], capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize(("site", "query_type"), [("news.example", "source"), ("shop.example", "trigger")])
def test_ipa_query_equals_the_reference_for_both_query_types(network, events, site, query_type):
    """News's impressions and every advertiser's conversions (other publishers' impressions in the
    upload are neutralised); likewise shop's conversions against every publisher's impressions."""
    query = ["--input", str(events), "--breakdowns", "16", "--cap", "300", "--window", "604800",
             "--site", site, "--query-type", query_type]  # fmt: skip
    done = ipa("query", "--network", str(network.network_file), "--identity", identity(network), *query,
               "--epoch", "0-1", "--no-noise")  # fmt: skip
    assert done.returncode == 0, done.stderr
    released = json.loads(done.stdout)["sums"]
    reference = ipa("reference", *query)
    assert released == json.loads(reference.stdout)["sums"]
    assert sum(released) > 0
    # The reports made off the querying side do matter: counted as the querying site's, they change it.
    ev = read_csv(events)
    unsited = Events(*(getattr(ev, f) for f in ("timestamp", "match_key", "is_trigger", "breakdown_key",
                                                  "trigger_value", "constraint_id")))  # fmt: skip
    config = QueryConfig(num_breakdowns=16, cap=300, window=604800, timestamp_bits=32, query_type=query_type)
    assert attribute_query(unsited, config).tolist() != released


def test_a_smuggled_impression_never_counts_and_every_epoch_is_charged(network):
    """Source fanout for news.example: a sport.example impression slipped in just before a purchase."""
    net = Network.load(network.network_file)
    config = QueryConfig(num_breakdowns=4, cap=100, timestamp_bits=32)
    week = net.epochs.length_seconds
    events = Events.from_columns(
        timestamp=[week - 100, week - 50, week + 10, 500],
        match_key=[7, 7, 7, 8],
        is_trigger=[0, 0, 1, 1],
        breakdown_key=[1, 2, 0, 0],
        trigger_value=[0, 0, 60, 5],
        site=["news.example", "sport.example", "shop.example", "travel.example"],
    )
    query = Binding("news.example", network.identity.name, 0, "mkp")
    collector = ReportCollector(net, query, config, last_epoch=1)
    collector.add_events(
        events, simulate_user_agents(events, net, query, net.epochs.epochs_of(events.timestamp))
    )
    with QueryClient(endpoints(network.network_file), network.identity) as client:
        _, sums = collector.submit(client, no_noise=True)
        assert sums.tolist() == [0, 60, 0, 0]  # the news impression (key 1), never sport's (key 2)
        assert attribute_query(events, config, "news.example").tolist() == [0, 60, 0, 0]
        _, noised = collector.submit(client, epsilon=0.5)
    for epoch in ("0", "1"):
        where = ["--network", str(network.network_file), "--identity", identity(network)]
        spent = ipa("budget", *where, "--site", "news.example", "--epoch", epoch)
        assert spent.returncode == 0, spent.stderr
        assert json.loads(spent.stdout)["spent"] == pytest.approx(0.5)
    assert len(noised) == 4


def test_a_report_outside_the_query_epochs_is_refused(network):
    net = Network.load(network.network_file)
    config = QueryConfig(num_breakdowns=2, cap=10)
    events = Events.from_columns(
        timestamp=[1, 2], match_key=[3, 3], is_trigger=[0, 1], breakdown_key=[1, 0], trigger_value=[0, 4]
    )
    query = Binding("news.example", network.identity.name, 2, "mkp")
    collector = ReportCollector(net, query, config)
    collector.add_events(events, simulate_user_agents(events, net, query, np.array([2, 3])))
    with (
        QueryClient(endpoints(network.network_file), network.identity) as client,
        pytest.raises(QueryFailedError, match=r"report 1: wrong epoch"),
    ):
        collector.submit(client, no_noise=True)


def test_query_type_is_checked(network, events):
    query = ["--input", str(events), "--breakdowns", "4", "--cap", "10", "--site", "news.example"]
    done = ipa("query", "--network", str(network.network_file), "--identity", identity(network), *query,
               "--query-type", "x", "--epoch", "0")  # fmt: skip
    assert done.returncode == 2
    assert "--query-type" in done.stderr
