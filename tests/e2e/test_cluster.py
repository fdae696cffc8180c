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


@pytest.mark.parametrize(("site", "query_type"), [("news.example", "source"), ("shop.example", "trigger")])
def test_queries_over_ray_workers_equal_the_reference(network, events, site, query_type):
    query = ["--input", str(events), "--breakdowns", "16", "--cap", "300", "--window", "604800",
             "--site", site, "--query-type", query_type]  # fmt: skip
    done = ipa("query", "--network", str(network.network_file), "--identity",
               str(network.directory / "collectors" / "default.toml"), *query, "--epoch", "0-1",
               "--no-noise")  # fmt: skip
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
