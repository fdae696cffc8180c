"""Helpers spread over Ray: three real helper processes, each with a local Ray cluster of two workers.

Marked ``cluster``: a network starts three Ray clusters (about 5–10 s each,
one after the other), so the file keeps to one network and a few queries;
the fault cases are in ``test_cluster_faults.py``, on a network of their own
that starts only once this one has stopped.
"""

import json

import numpy as np
import pytest
from cluster_net import CONFIG, WORKERS, cluster_network, ipa, log_events, workers_of

from ipa.attribution.rows import COLLECTOR_FIELDS, presort_order, share_collector_fields
from ipa.crypto.binding import Binding
from ipa.errors import InvalidReportError
from ipa.mpc.collective import slices
from ipa.network import Network, read_key_registry
from ipa.reference import attribute_query
from ipa.reports.batch import encode_batch
from ipa.reports.decode import InvalidReportPolicy, decode_batch
from ipa.reports.layout import FIELD_RECORD
from ipa.synthetic import generate
from ipa_client.collector import simulate_user_agents
from ipa_client.commands.keygen import hpke_key_file
from ipa_client.query_client import QueryClient, QueryFailedError, endpoints, query_params

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    with cluster_network(tmp_path_factory.mktemp("cluster"), timeout_seconds=60) as local:
        yield local


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """Multi-site events over two weekly epochs."""
    path = tmp_path_factory.mktemp("events") / "events.csv"
    assert ipa("gen-events", "--events", "2000", "--seed", "8", "--out", str(path)).returncode == 0
    return path


def test_each_helper_runs_two_ray_workers_of_its_own(network):
    pids = []
    for helper in network.helpers:
        (started,) = log_events(helper.log, "cluster_started")
        assert started["workers"] == WORKERS and started["address"] == "local"
        workers = workers_of(helper.pid)
        assert sorted(workers) == sorted(int(p) for p in started["worker_pids"].split(","))
        pids += workers
    assert len(set(pids)) == 3 * WORKERS


@pytest.mark.parametrize(
    ("site", "query_type", "security"),
    [("news.example", "source", "semi-honest"), ("shop.example", "trigger", "semi-honest"),
     ("news.example", "source", "malicious")],
)  # fmt: skip
def test_queries_over_ray_workers_equal_the_reference(network, events, site, query_type, security):
    cuts: dict[str, set[str]] = {}
    query = ["--input", str(events), "--breakdowns", "16", "--cap", "300", "--window", "604800",
             "--site", site, "--query-type", query_type]  # fmt: skip
    done = ipa("query", "--network", str(network.network_file), "--identity",
               str(network.directory / "collectors" / "default.toml"), *query, "--epoch", "0-1",
               "--no-noise", "--security", security)  # fmt: skip
    assert done.returncode == 0, done.stderr
    released = json.loads(done.stdout)["sums"]
    assert released == json.loads(ipa("reference", *query).stdout)["sums"]
    assert sum(released) > 0
    for helper in network.helpers:  # both workers of every helper decoded a slice of the upload
        last = log_events(helper.log, "workers_decoded")[-1]
        rows = [int(r) for r in last["rows"].split(",")]
        assert all(r > 0 for r in rows) and last["distinct"] > 0
        # what crossed between coordinator and workers: the chunks covering each slice out (one
        # chunk of up to 8,192 reports, 93 + 66 bytes each, and its 16-byte tag, covers both
        # slices here), one verdict byte per report back (docs/scaling.md)
        assert (last["bytes_out"], last["bytes_in"]) == (WORKERS * (159 * sum(rows) + 16), sum(rows))
        # the workers looked for duplicates together: each sent the other its rows of the other's
        assert all(int(b) > 0 for b in last["sibling_bytes"].split(","))
        # the query ran on both worker triples: worker k of every helper ran it on block k (the
        # same cut everywhere) and exchanged its MPC messages with its two peers
        queried = log_events(helper.log, "workers_queried")[-1]
        blocks = [int(r) for r in queried["rows"].split(",")]
        assert len(blocks) == WORKERS and all(r > 0 for r in blocks) and max(blocks) - min(blocks) <= 1
        assert all(int(b) > 0 for b in queried["peer_bytes"].split(","))
        # out: nothing but the indices of the rows to drop (none here): the rows stay on the workers
        # that decoded them; back: both components of the 16 sums from each worker
        assert queried["bytes_out"] == 0
        assert queried["bytes_in"] == WORKERS * 2 * 8 * 16
        cuts.setdefault(query_type + security, set()).add(queried["rows"])
        # between the workers: each sent rows to the other, and every byte sent arrived
        sent = [int(b) for b in queried["sibling_bytes"].split(",")]
        assert all(b > 0 for b in sent) and sum(sent) == sum(map(int, queried["sibling_bytes_in"].split(",")))
        if security == "malicious":  # one verifier per triple: each within 2^-(40 + 1)
            assert all(float(b) <= -41 for b in queried["log2_soundness"].split(","))
    assert len(cuts[query_type + security]) == 1  # every helper cut the rows alike


def _batches(local, data, binding, chunk_rows):
    """The three helpers' batches of ``data`` (as a report collector makes them, presorted), with
    invalid reports in both halves: duplicates at every helper, a match key that does not open at
    H2, a field out of range at H3. Returns (batches, presorted events)."""
    net = Network.load(local.network_file)
    match_keys = simulate_user_agents(data, net, binding)
    order = presort_order(data)
    events, match_keys = data.take(order), [match_keys[r] for r in order.tolist()]
    shares = share_collector_fields(events, CONFIG)
    fields = [np.zeros(len(events), dtype=FIELD_RECORD) for _ in range(3)]
    for h, name in ((h, name) for h in range(3) for name in COLLECTOR_FIELDS):
        fields[h][name][:, 0], fields[h][name][:, 1] = shares[name][h].left, shares[name][h].right
    n = len(events)
    for copy, of in ((17, 3), (n - 5, 40), (n - 40, n // 2 + 9)):  # a report sent again, byte for byte
        match_keys[copy] = match_keys[of]
        for h in range(3):
            fields[h][copy] = fields[h][of]
    for far in (30, n - 60):
        fields[2][far]["timestamp"][0] = 2**40  # wider than the query's 20 timestamp bits, at H3
    batches = [
        bytearray(encode_batch(key, binding, match_keys, fields[h], chunk_rows))
        for h, key in enumerate(net.public_keys)
    ]
    head = 42 + 64 + 8 + 1 + len(binding.site)  # header, sealed batch key, query tail, site table
    for bad in (50, n - 70):  # H2 cannot open these match keys
        chunk, row = divmod(bad, chunk_rows)
        chunk_bytes = chunk_rows * (93 + 66) + 16
        batches[1][head + chunk * chunk_bytes + row * 93 + 29 + 5] ^= 0x01
    return [bytes(b) for b in batches], events


def test_invalid_reports_in_every_workers_slice_are_dropped_as_with_one_process(network):
    """Each helper decodes its upload on its two workers; the reports it drops (duplicates of a
    report of the other worker's slice among them) and the rows the three keep are those of one
    process decoding the whole upload, and the sums equal the reference on the rows kept."""
    binding = Binding(site="decode.example", report_collector="default", epoch=3, match_key_provider="mkp")
    data = generate(700, seed=6, num_breakdowns=CONFIG.num_breakdowns, timestamp_bits=20)
    batches, events = _batches(network, data, binding, chunk_rows=64)
    whole = [
        decode_batch(
            batches[h], read_key_registry(network.directory / hpke_key_file(h)), binding, CONFIG,
            policy=InvalidReportPolicy.DROP,
        )
        for h in range(3)
    ]  # fmt: skip
    keep = whole[0].valid & whole[1].valid & whole[2].valid
    dropped = np.flatnonzero(~keep)
    halves = slices(len(events), WORKERS)
    assert all(((dropped >= s.start) & (dropped < s.stop)).sum() >= 3 for s in halves), dropped
    with QueryClient(endpoints(network.network_file), network.identity, timeout=60) as client:
        query_id = client.create(query_params(binding, CONFIG, no_noise=True, drop_invalid=True))
        client.upload(query_id, batches)
        statuses = client.wait(query_id, poll=0.1, deadline=300)
        sums = client.results(query_id)
        # without the drop policy the query fails on the report one process refuses first
        refusing = client.create(query_params(binding, CONFIG, no_noise=True))
        client.upload(refusing, batches)
        with pytest.raises(QueryFailedError) as failed:
            client.wait(refusing, poll=0.1, deadline=300)
    assert [dict(s.invalid_reports) for s in statuses] == [w.rejected() for w in whole]
    assert whole[1].rejected() == {"DUPLICATE": 3, "DECRYPTION_FAILED": 2}
    assert [s.rows for s in statuses] == [int(keep.sum())] * 3
    with pytest.raises(InvalidReportError) as first:
        decode_batch(batches[0], read_key_registry(network.directory / hpke_key_file(0)), binding, CONFIG)
    assert str(first.value) == "report 17: duplicate" and str(first.value) in str(failed.value)
    assert sums.tolist() == attribute_query(events.take(keep), CONFIG).tolist()
    for helper in network.helpers:  # each worker ran the query on the rows it kept of its slice
        queried = log_events(helper.log, "workers_queried")[-1]
        assert [int(r) for r in queried["rows"].split(",")] == [int(keep[s].sum()) for s in halves]
        assert queried["bytes_out"] == 8 * len(dropped)  # the indices of the rows to drop
