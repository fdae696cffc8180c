"""Verified inputs against three real helper processes (docs/malicious.md §3): checkpoint 0.

A leader that forwards its peers other parameters than the collector's
(``IPA_TAMPER=forward:<field>``, a test-only switch of ``ipa-helper``) is
refused by both peers, which compare them with the digest in the collector's
upload to each; a report collector that sends inconsistent replicated shares
(the two holders of one component get different copies) is caught by the
input-consistency check before the MPC starts. Either way the query fails
everywhere, nothing is spent at any helper, and the helpers keep serving.
"""

import contextlib
import io
import json
import time

import numpy as np
import pytest
from test_helper_processes import wait_final

import ipa_client.collector as collector_module
from ipa.attribution.config import QueryConfig
from ipa.crypto.binding import Binding
from ipa.network import Network
from ipa.synthetic import generate
from ipa_client.cli import main
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.local_network import LocalNetwork
from ipa_client.query_client import QueryClient, QueryFailedError, endpoints

CONFIG = QueryConfig(num_breakdowns=4, cap=20, timestamp_bits=20)
EVENTS = generate(300, seed=17, num_breakdowns=4)
EPOCH = 4


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    with LocalNetwork(tmp_path_factory.mktemp("inputs"), allow_unnoised=False, timeout_seconds=5) as local:
        yield local


def binding(site: str) -> Binding:
    return Binding(site=site, report_collector="default", epoch=EPOCH, match_key_provider="mkp")


def collector(network, site: str) -> ReportCollector:
    net = Network.load(network.network_file)
    rc = ReportCollector(net, binding(site), CONFIG)
    rc.add_events(EVENTS, simulate_user_agents(EVENTS, net, binding(site)))
    return rc


def budget(network, site: str) -> dict:
    """``ipa budget`` in this process; it exits non-zero while the three ledgers disagree."""
    out = io.StringIO()
    argv = ["budget", "--network", str(network.network_file), "--site", site, "--epoch", str(EPOCH)]
    identity = ["--identity", str(network.directory / "collectors" / "default.toml")]
    with contextlib.redirect_stdout(out):
        code = main([*argv, *identity, "--wait", "0"])
    return json.loads(out.getvalue()) if code == 0 else {}


def settled(network, site: str, deadline: float = 30.0) -> dict:
    """The budget once no query of ``site`` is reserved anywhere and the ledgers agree."""
    end = time.monotonic() + deadline
    while True:
        state = budget(network, site)
        if state and all(q["state"] != "reserved" for q in state["queries"]):
            return state
        assert time.monotonic() < end, f"the ledgers did not settle: {state}"
        time.sleep(0.2)


def test_inconsistent_shares_from_the_collector_fail_the_query_everywhere_refunded(network, monkeypatch):
    site = "inconsistent.example"
    real_encode = collector_module.encode_batch

    def tampered(public_key, *args, **kwargs):
        """H2's copy of component 1 (which H1 also holds) differs in one bit of one row's timestamp."""
        if public_key.helper == 1:
            fields = args[2].copy()
            fields["timestamp"][7, 0] ^= 1
            args = (*args[:2], fields, *args[3:])
        return real_encode(public_key, *args, **kwargs)

    monkeypatch.setattr(collector_module, "encode_batch", tampered)
    rc = collector(network, site)
    with QueryClient(endpoints(network.network_file), network.identity, timeout=20) as client:
        with pytest.raises(QueryFailedError, match="input consistency"):
            rc.submit(client, epsilon=1.0)
        query_id = settled(network, site)["queries"][0]["query_id"]
        errors = [wait_final(client, query_id, helper).error for helper in range(3)]
    # H1 and H2 (the two holders of component 1) find it, naming no value; whoever finds it
    # first tells the others (then the status says from whom: "H1: ...").
    found = (
        "malicious behaviour detected: input consistency check failed "
        "(H1 and H2 hold different copies of component 1)"
    )
    assert all(e in (found, f"H1: {found}", f"H2: {found}") for e in errors), errors
    assert found in errors[:2]
    state = settled(network, site)
    assert [q["state"] for q in state["queries"]] == ["refunded"]
    assert state["rho"]["spent"] == 0
    monkeypatch.undo()  # an honest query of the same collector then runs
    with QueryClient(endpoints(network.network_file), network.identity, timeout=20) as client:
        release = collector(network, site).submit(client, epsilon=1.0)
    assert release.sums.shape == (4,) and np.isfinite(release.sums).all()
    assert [q["state"] for q in settled(network, site)["queries"]] == ["refunded", "committed"]


@pytest.mark.parametrize("field", ["epsilon", "cap"])
def test_a_leader_forwarding_altered_parameters_is_refused_and_nothing_is_spent(network, field):
    site = f"leader-{field}.example"
    leader = network.helpers[0]
    leader.stop()
    leader.start(env={"IPA_TAMPER": f"forward:{field}"})
    try:
        with QueryClient(endpoints(network.network_file), network.identity, timeout=20) as client:
            with pytest.raises(QueryFailedError, match="query parameters differ from the collector's"):
                collector(network, site).submit(client, epsilon=1.0)
            query_id = settled(network, site)["queries"][0]["query_id"]
            errors = [wait_final(client, query_id, helper).error for helper in range(3)]
        assert b'"tamper"' in leader.log.read_bytes()  # the switch did fire
    finally:
        leader.stop()
        leader.start()
    for helper, error in enumerate(errors):  # H2 and H3 each refuse; H1 learns it from them
        assert "query parameters check failed" in error, (helper, error)
    assert errors[1].endswith("those H1 forwarded do not match the digest in the collector's upload to H2)")
    state = settled(network, site)
    assert [q["state"] for q in state["queries"]] == ["refunded"]
    assert state["rho"]["spent"] == 0 and state["spent_by_helper"] == [0.0, 0.0, 0.0]
    with QueryClient(endpoints(network.network_file), network.identity, timeout=20) as client:
        collector(network, site).submit(client, epsilon=1.0)  # an honest leader again: it runs
    assert [q["state"] for q in settled(network, site)["queries"]] == ["refunded", "committed"]
