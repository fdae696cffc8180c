"""The privacy budget against three real helper processes: admission, refunds, crashes, noise."""

import contextlib
import io
import json
import threading
import time

import numpy as np
import pytest

from ipa.attribution.config import QueryConfig
from ipa.crypto.binding import Binding
from ipa.network import Network
from ipa.reference import attribute
from ipa.synthetic import generate
from ipa_client.cli import main
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.local_network import LocalNetwork
from ipa_client.query_client import QueryClient, QueryFailedError, endpoints, query_params

CONFIG = QueryConfig(num_breakdowns=4, cap=20, timestamp_bits=20)
EVENTS = generate(4000, seed=12, num_breakdowns=4)


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    with LocalNetwork(tmp_path_factory.mktemp("budget"), allow_unnoised=False, timeout_seconds=5) as local:
        yield local


def binding(site: str) -> Binding:
    return Binding(site=site, report_collector="default", epoch=3, match_key_provider="mkp")


def collector(network, site):
    net = Network.load(network.network_file)
    rc = ReportCollector(net, binding(site), CONFIG)
    rc.add_events(EVENTS, simulate_user_agents(EVENTS, net, binding(site)))
    return rc


def budget(network, site) -> dict:
    """``ipa budget`` in this process (an interpreter start takes seconds on a loaded machine)."""
    out = io.StringIO()
    argv = ["budget", "--network", str(network.network_file), "--site", site, "--epoch", "3"]
    identity = ["--identity", str(network.directory / "collectors" / "default.toml")]
    with contextlib.redirect_stdout(out):
        assert main([*argv, *identity]) == 0
    return json.loads(out.getvalue())


def test_a_noised_query_spends_its_epsilon_and_releases_plausible_sums(network):
    with QueryClient(endpoints(network.network_file), network.identity) as client:
        query_id, sums = collector(network, "noised.example").submit(client, epsilon=1.0, delta=1e-9)
    exact = attribute(EVENTS, num_breakdowns=4, cap=20).astype(np.int64)
    # σ_h ≈ 5.8·cap per helper; three helpers: std ≈ 200. Ten standard deviations is a wide bound.
    assert np.all(np.abs(sums - exact) < 2000)
    state = budget(network, "noised.example")
    assert state["spent"] == 1.0 and state["remaining"] == 9.0
    assert state["queries"] == [{"query_id": query_id, "epsilon": 1.0, "state": "committed"}]


def test_concurrent_queries_admit_exactly_what_the_budget_allows(network):
    site = "busy.example"
    created, refused = [], []
    batches = collector(network, site).uploads()  # before the queries: each expires 5 s without an upload
    with QueryClient(endpoints(network.network_file), network.identity) as client:

        def ask():
            try:
                created.append(client.create(query_params(binding(site), CONFIG, epsilon=3.0, delta=1e-9)))
            except QueryFailedError as exc:
                refused.append(str(exc))

        threads = [threading.Thread(target=ask) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(created) == 3 and len(refused) == 3
        assert all("privacy budget exceeded" in r for r in refused)
        for query_id in created:
            client.upload(query_id, batches)
        for query_id in created:
            client.wait(query_id)
    state = budget(network, site)
    assert state["spent"] == 9.0 and sorted(q["query_id"] for q in state["queries"]) == sorted(created)


def test_a_failed_query_is_refunded_everywhere(network):
    site = "refund.example"
    with QueryClient(endpoints(network.network_file), network.identity) as client:
        query_id = client.create(query_params(binding(site), CONFIG, epsilon=2.0, delta=1e-9))
        assert budget(network, site)["spent"] == 2.0
        good = collector(network, site).uploads()
        with pytest.raises(QueryFailedError):
            client.upload(query_id, [b"garbage", good[1], good[2]])
            client.wait(query_id)
    for _ in range(50):
        if budget(network, site)["spent"] == 0.0:
            break
        time.sleep(0.1)
    state = budget(network, site)  # `ipa budget` also checks that the three ledgers agree
    assert state["spent"] == 0.0 and state["queries"][0]["state"] == "refunded"


def test_a_helper_killed_before_it_finishes_refunds_and_the_ledger_survives_restarts(network):
    site = "crash.example"
    with QueryClient(endpoints(network.network_file), network.identity) as client:
        collector(network, site).submit(client, epsilon=1.5, delta=1e-9)  # committed spend
        query_id = client.create(query_params(binding(site), CONFIG, epsilon=2.5, delta=1e-9))
        network.helpers[1].kill()  # kill -9 H2 with the spend reserved everywhere
        with pytest.raises(QueryFailedError):
            client.upload(query_id, collector(network, site).uploads())
        with pytest.raises(QueryFailedError, match="H2"):  # H1 and H3 give up on H2
            client.wait(query_id, deadline=60)
    network.helpers[1].start()
    for helper in network.helpers:  # and every helper restarts with its ledger intact
        helper.stop()
        helper.start()
    state = budget(network, site)
    assert state["spent"] == 1.5
    assert [q["state"] for q in state["queries"]] == ["committed", "refunded"]


def test_a_query_asking_for_more_than_remains_is_refused_before_any_work(network):
    site = "small.example"
    with QueryClient(endpoints(network.network_file), network.identity) as client:
        client.create(query_params(binding(site), CONFIG, epsilon=9.5, delta=1e-9))
        with pytest.raises(QueryFailedError, match=r"ε = 1, 0.5 of 10 remains"):
            client.create(query_params(binding(site), CONFIG, epsilon=1.0, delta=1e-9))
