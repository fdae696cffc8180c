"""The privacy budget against three real helper processes: admission in ρ, δ, refunds, crashes, noise."""

import contextlib
import io
import json
import threading
import time

import numpy as np
import pytest

from ipa.attribution.config import QueryConfig
from ipa.crypto.binding import Binding
from ipa.dp.accounting import EpochBudget, noise_scale, query_charge_units
from ipa.dp.noise import noise_statement
from ipa.network import Network
from ipa.reference import attribute, attribute_query
from ipa.synthetic import generate
from ipa_client.cli import main
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.local_network import LocalNetwork
from ipa_client.query_client import QueryClient, QueryFailedError, endpoints, query_params

CONFIG = QueryConfig(num_breakdowns=4, cap=20, timestamp_bits=20)
DELTA = 1e-9  # the network's (keygen's default)
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


def test_a_noised_query_spends_its_rho_and_states_its_noise(network):
    with QueryClient(endpoints(network.network_file), network.identity) as client:
        release = collector(network, "noised.example").submit(client, epsilon=1.0)
    exact = attribute(EVENTS, num_breakdowns=4, cap=20).astype(np.int64)
    scale = noise_scale(1.0, DELTA, 20)  # what every helper added, at the network's δ
    assert release.noise == noise_statement([scale] * 3, 4)
    assert release.noise.std[0] == pytest.approx(np.sqrt(3) * scale)
    assert np.all(np.abs(release.sums - exact) < 10 * release.noise.std[0])
    state = budget(network, "noised.example")
    charge = query_charge_units(1.0, DELTA, 20)
    assert state["rho"]["spent"] == charge and state["rho"]["budget"] == EpochBudget.of(10.0, DELTA).units
    assert state["spent"] == pytest.approx(1.0) and state["spent"] <= 1.0 and state["delta"] == DELTA
    assert state["remaining"] > 9.5  # composed in ρ, one query of ε = 1 leaves more than 10 − 1
    assert state["queries"] == [
        {"query_id": release.query_id, "epsilon": 1.0, "rho_units": charge, "state": "committed"}
    ]


def test_released_sums_fall_within_their_stated_intervals(network):
    """128 sums of one query on real helpers: about 95 % inside their 95 % intervals.

    The helpers' noise comes from a CSPRNG (no seed); the bound is wide
    instead: at least 85 % (P(fewer) = P(Bin(128, 0.05) ≥ 20) ≈ 10⁻⁵).
    """
    config = QueryConfig(num_breakdowns=128, cap=20, timestamp_bits=20)
    events = generate(4000, seed=13, num_breakdowns=128)
    net = Network.load(network.network_file)
    rc = ReportCollector(net, binding("intervals.example"), config)
    rc.add_events(events, simulate_user_agents(events, net, binding("intervals.example")))
    with QueryClient(endpoints(network.network_file), network.identity) as client:
        release = rc.submit(client, epsilon=1.0)
    error = np.abs(release.sums - attribute_query(events, config).astype(np.int64))
    inside = np.mean(error <= np.array(release.noise.ci95))
    assert 0.85 <= inside <= 1.0
    assert len(release.noise.std) == 128 and release.noise.mechanism == "discrete_gaussian"


def test_a_query_asking_for_another_delta_is_refused_before_any_budget_moves(network):
    site = "delta.example"
    with QueryClient(endpoints(network.network_file), network.identity) as client:
        for delta in (0.5, 1e-6, 1e-10):
            with pytest.raises(QueryFailedError, match=r"this network's δ is 1e-09; .* asked δ = "):
                client.create(query_params(binding(site), CONFIG, epsilon=1.0, delta=delta))
        assert budget(network, site)["rho"]["spent"] == 0
        query_id = client.create(query_params(binding(site), CONFIG, epsilon=1.0, delta=DELTA))  # its own δ
        client.cancel(query_id)


def test_concurrent_queries_admit_exactly_what_the_budget_allows(network):
    site = "busy.example"
    fits = EpochBudget.of(10.0, DELTA).units // query_charge_units(5.0, DELTA, 20)
    assert fits == 3  # three queries of ε = 5 compose to ε ≤ 10 in ρ (two would by ε-sum)
    created, refused = [], []
    batches = collector(network, site).uploads()  # before the queries: each expires 5 s without an upload
    with QueryClient(endpoints(network.network_file), network.identity) as client:

        def ask():
            try:
                query_id = client.create(query_params(binding(site), CONFIG, epsilon=5.0))
            except QueryFailedError as exc:
                refused.append(str(exc))
                return
            created.append(query_id)
            client.upload(query_id, batches)  # at once: a query expires 5 s without its upload

        threads = [threading.Thread(target=ask) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(created) == 3 and len(refused) == 3
        assert all("privacy budget exceeded" in r for r in refused)
        for query_id in created:
            client.wait(query_id)
    state = budget(network, site)
    assert state["rho"]["spent"] == 3 * query_charge_units(5.0, DELTA, 20) and state["spent"] <= 10.0
    assert sorted(q["query_id"] for q in state["queries"]) == sorted(created)


def test_a_failed_query_is_refunded_everywhere(network):
    site = "refund.example"
    with QueryClient(endpoints(network.network_file), network.identity) as client:
        query_id = client.create(query_params(binding(site), CONFIG, epsilon=2.0))
        assert budget(network, site)["spent"] == pytest.approx(2.0)
        good = collector(network, site).uploads()
        with pytest.raises(QueryFailedError):
            client.upload(query_id, [b"garbage", good[1], good[2]])
            client.wait(query_id)
    for _ in range(50):
        if budget(network, site)["rho"]["spent"] == 0:
            break
        time.sleep(0.1)
    state = budget(network, site)  # `ipa budget` also checks that the three ledgers agree
    assert state["rho"]["spent"] == 0 and state["queries"][0]["state"] == "refunded"


def test_a_helper_killed_before_it_finishes_refunds_and_the_ledger_survives_restarts(network):
    site = "crash.example"
    with QueryClient(endpoints(network.network_file), network.identity) as client:
        collector(network, site).submit(client, epsilon=1.5)  # committed spend
        query_id = client.create(query_params(binding(site), CONFIG, epsilon=2.5))
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
    assert state["rho"]["spent"] == query_charge_units(1.5, DELTA, 20)
    assert [q["state"] for q in state["queries"]] == ["committed", "refunded"]


def test_a_query_asking_for_more_than_remains_is_refused_before_any_work(network):
    site = "small.example"
    with QueryClient(endpoints(network.network_file), network.identity) as client:
        client.create(query_params(binding(site), CONFIG, epsilon=9.5))
        remaining = budget(network, site)["remaining"]  # the largest ε one more query may have
        assert 0.5 < remaining < 9.5
        with pytest.raises(QueryFailedError, match=rf"exceeded .*ε = {remaining * 1.01:g} "):
            client.create(query_params(binding(site), CONFIG, epsilon=remaining * 1.01))
        spent = budget(network, site)["rho"]["spent"]
        client.cancel(client.create(query_params(binding(site), CONFIG, epsilon=remaining * 0.99)))
    assert spent == query_charge_units(9.5, DELTA, 20)
