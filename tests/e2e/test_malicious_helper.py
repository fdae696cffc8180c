"""A helper process that alters one MPC message: the other two abort, nothing is released, the ε is
refunded, and the helpers go on serving (``IPA_TAMPER=message:STEP``, a test-only switch of
``ipa-helper``). Also: a malicious-only network refuses semi-honest queries."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from ipa.attribution.config import QueryConfig
from ipa.attribution.pipeline import run_query
from ipa.attribution.rows import share_events
from ipa.crypto.binding import Binding
from ipa.mpc.memory import run_three
from ipa.network import Network
from ipa.reference import attribute_query
from ipa.synthetic import generate
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.local_network import LocalNetwork
from ipa_client.query_client import QueryClient, QueryFailedError, endpoints, query_params
from ipa_rpc.v1 import query_pb2

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


def a_checked_step(helper: int) -> str:
    """A step of the malicious query at which ``helper`` (0-based) sends a product's message (the cap's)."""
    result = run_three(
        lambda ctx, rows: run_query(ctx, rows, CONFIG), share_events(EVENTS, CONFIG), security="malicious"
    )
    return min(m.step for m in result.messages if m.party == helper and m.step.startswith("root/cap/"))


def spent(local, epoch):
    done = subprocess.run(
        [
            sys.executable, "-m", "ipa_client.cli", "budget", "--network", str(local.network_file),
            "--identity", str(local.directory / "collectors" / "default.toml"),
            "--site", SITE, "--epoch", str(epoch), "--wait", "0",
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["spent_by_helper"]


def failed_everywhere(client, query_id, deadline=60.0):
    end = time.monotonic() + deadline
    while True:
        statuses = client.status(query_id)
        if all(s.state == query_pb2.FAILED for s in statuses) or time.monotonic() > end:
            return statuses
        time.sleep(0.2)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    with LocalNetwork(tmp_path_factory.mktemp("malicious"), security="malicious", timeout_seconds=30) as net:
        yield net


def test_a_tampering_helper_fails_the_query_everywhere_and_the_next_query_succeeds(local):
    victim = local.helpers[1]
    victim.stop()
    victim.start(env={"IPA_TAMPER": f"message:{a_checked_step(1)}"})
    with QueryClient(endpoints(local.network_file), local.identity, timeout=60) as client:
        query_id = client.create(query_params(binding(7), CONFIG, epsilon=1.0, security="malicious"))
        client.upload(query_id, uploads(local.network_file, 7))
        with pytest.raises(QueryFailedError, match="malicious behaviour detected"):
            client.wait(query_id, deadline=300)
        statuses = failed_everywhere(client, query_id)
        assert [s.state for s in statuses] == [query_pb2.FAILED] * 3
        assert all("malicious behaviour detected" in s.error for s in statuses)
        with pytest.raises(QueryFailedError):
            client.results(query_id)  # nothing was released
        assert b'"tamper"' in victim.log.read_bytes()
    assert spent(local, 7) == [0.0, 0.0, 0.0]  # refunded everywhere

    with QueryClient(endpoints(local.network_file), local.identity, timeout=60) as client:
        query_id = client.create(query_params(binding(8), CONFIG, no_noise=True, security="malicious"))
        client.upload(query_id, uploads(local.network_file, 8))
        client.wait(query_id, deadline=300)
        sums = client.results(query_id)
    assert np.array_equal(sums, attribute_query(EVENTS, CONFIG))


def test_a_malicious_only_network_refuses_semi_honest_queries(local):
    params = query_params(binding(9), CONFIG, no_noise=True, security="semi-honest")
    client = QueryClient(endpoints(local.network_file), local.identity, timeout=60)
    with client, pytest.raises(QueryFailedError, match="semi-honest query is refused"):
        client.create(params)
