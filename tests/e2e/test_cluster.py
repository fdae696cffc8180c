"""Helpers spread over Ray: three real helper processes, each with a local Ray cluster of two workers.

Marked ``cluster``: a network starts three Ray clusters (about 5–10 s each,
one after the other), so the file keeps to one network and a few queries;
the fault cases are in ``test_cluster_faults.py``, on a network of their own
that starts only once this one has stopped.
"""

import json

import pytest
from cluster_net import WORKERS, cluster_network, ipa, log_events, workers_of

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
    for helper in network.helpers:  # the match keys were opened by both workers of every helper
        last = log_events(helper.log, "workers_opened")[-1]
        rows = [int(r) for r in last["rows"].split(",")]
        assert all(r > 0 for r in rows)
        # what crossed between coordinator and workers: key id and 64-byte sealed key out,
        # 16-byte plaintext and a validity flag back, per row (docs/scaling.md)
        assert (last["bytes_out"], last["bytes_in"]) == (65 * sum(rows), 17 * sum(rows))
        # the query ran on both worker triples: worker k of every helper ran it on block k (the
        # same cut everywhere) and exchanged its MPC messages with its two peers
        queried = log_events(helper.log, "workers_queried")[-1]
        blocks = [int(r) for r in queried["rows"].split(",")]
        assert len(blocks) == WORKERS and all(r > 0 for r in blocks) and max(blocks) - min(blocks) <= 1
        assert all(int(b) > 0 for b in queried["peer_bytes"].split(","))
        # out: both components of each share column per row (40-bit match key 8 bytes, constraint
        # id 1, timestamp 4, trigger flag 1, breakdown key 1, value 2) and the public site flag;
        # back: both components of the 16 sums from each worker
        assert queried["bytes_out"] == (2 * (8 + 1 + 4 + 1 + 1 + 2) + 1) * sum(blocks)
        assert queried["bytes_in"] == WORKERS * 2 * 8 * 16
        cuts.setdefault(query_type + security, set()).add(queried["rows"])
        # between the workers: each sent rows to the other, and every byte sent arrived
        sent = [int(b) for b in queried["sibling_bytes"].split(",")]
        assert all(b > 0 for b in sent) and sum(sent) == sum(map(int, queried["sibling_bytes_in"].split(",")))
        if security == "malicious":  # one verifier per triple: each within 2^-(40 + 1)
            assert all(float(b) <= -41 for b in queried["log2_soundness"].split(","))
    assert len(cuts[query_type + security]) == 1  # every helper cut the rows alike
