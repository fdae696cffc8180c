"""The end of a query is an agreement that converges after any crash (docs/reliability.md).

In-process, deterministic: a helper crashes (its thread ends at a chosen fault
point, nothing but its disk survives) or freezes there, is restarted from its
data directory, and the three ledgers must end in the same state, with a
deliverable result whenever the spend is committed. tests/e2e/test_faults.py
does the same with kill -9 and SIGSTOP of real processes.
"""

import contextlib
import os
import threading
from dataclasses import replace

import numpy as np
import pytest
from memory_world import CONFIG, Collector, fresh, memory_configs, spec, uploads

from ipa.errors import IpaError
from ipa.reference import attribute_query
from ipa.synthetic import generate
from ipa_helper.memory import Crash, MemoryNetwork
from ipa_helper.queries import State

EVENTS = generate(200, seed=8, num_breakdowns=4)
EXACT = attribute_query(EVENTS, CONFIG)
POINTS = ["uploaded", "computed", "stored", "voted", "told_one", "told_both", "committed"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("faults")
    configs = memory_configs(directory, timeout_seconds=2, retry_seconds=0.05)
    return configs, uploads(directory, EVENTS)


def settled(net, query_id, timeout=30.0):
    """Wait until every helper has decided; return the three outcomes."""
    end = threading.Event()
    for _ in range(int(timeout / 0.02)):
        states = [net.helper(p).outcome(query_id) for p in range(3)]
        if all(s in ("committed", "aborted") for s in states):
            return states
        end.wait(0.02)
    raise AssertionError(f"undecided: {states}")


def spends(net, query_id):
    return [
        next(s.state for s in net.helper(p).ledger.queries("shop.example", 3) if s.query_id == query_id)
        for p in range(3)
    ]


def crash_at(net, party, point):
    def fault(at):
        if at == point:
            net.crash(party)
            raise Crash

    net.helper(party)._fault = fault


def upload_all(rc, query_id, batches):
    """Each helper's upload from its own thread (a crashed or frozen helper blocks only its own)."""

    def one(party):
        with contextlib.suppress(IpaError, Crash):
            rc.net.helper(party).upload(query_id, rc.tokens[party], rc.params(query_id), [batches[party]])

    threads = [threading.Thread(target=one, args=(p,)) for p in range(3)]
    for t in threads:
        t.start()
    return threads


def check_agreement(net, rc, query_id):
    outcome = settled(net, query_id)
    assert len(set(outcome)) == 1, outcome
    assert len(set(spends(net, query_id))) == 1
    if outcome[0] == "committed":
        assert spends(net, query_id) == ["committed"] * 3
        assert np.abs(rc.results(query_id) - EXACT).max() < 2000  # deliverable, from disk where restarted
    else:
        assert spends(net, query_id) == ["refunded"] * 3
        rc.wait(query_id, lambda states: all(s.final for s in states))  # then the shares are deleted
        assert not any((c.data_dir / "results" / f"{query_id}.share").exists() for c in net.configs)
    return outcome[0]


# Every point with every helper when IPA_FAULT_MATRIX=full (about 2 minutes here); by
# default every point once, the crashing helper rotating over H1, H2, H3.
CASES = (
    [(point, party) for point in POINTS for party in range(3)]
    if os.environ.get("IPA_FAULT_MATRIX") == "full"
    else [(point, i % 3) for i, point in enumerate(POINTS)]
)


@pytest.mark.parametrize(("point", "party"), CASES)
def test_a_crash_at_any_point_then_a_restart_ends_in_agreement(files, tmp_path, point, party):
    configs, batches = files
    net = MemoryNetwork(fresh(configs, tmp_path))
    try:
        rc = Collector(net)
        query_id = rc.create(spec(epsilon=1.0, no_noise=False))
        crash_at(net, party, point)
        for t in upload_all(rc, query_id, batches):
            t.join()
        while net.helpers[party] is not None:  # the crash happens in the helper's worker
            threading.Event().wait(0.01)
        net.start(party)
        outcome = check_agreement(net, rc, query_id)
        # Before its vote, a crash aborts; once it has voted, the query commits.
        expected = "aborted" if POINTS.index(point) < POINTS.index("voted") else "committed"
        assert outcome == expected
    finally:
        net.close()


def test_a_helper_frozen_before_its_vote_past_the_peers_deadline_still_agrees(files, tmp_path):
    configs, batches = files
    net = MemoryNetwork(fresh(configs, tmp_path))
    try:
        rc = Collector(net)
        query_id = rc.create(spec(epsilon=1.0, no_noise=False))
        frozen, thaw = threading.Event(), threading.Event()

        def freeze(at):
            if at == "computed":
                frozen.set()
                thaw.wait(30)

        net.helper(2)._fault = freeze
        threads = upload_all(rc, query_id, batches)
        assert frozen.wait(30)
        # H1 and H2 have voted and waited past their deadline: they may not abort any
        # more, and H3 has not voted: nobody may commit. They keep asking.
        rc.wait(query_id, lambda s: s[:2] == [State.RUNNING] * 2)
        threading.Event().wait(2.5)
        assert [net.helper(p).outcome(query_id) for p in range(3)] == ["ready", "ready", "open"]
        thaw.set()
        for t in threads:
            t.join()
        assert check_agreement(net, rc, query_id) == "committed"
    finally:
        net.close()


def test_a_helper_frozen_before_the_mpc_aborts_with_its_peers_when_it_resumes(files, tmp_path):
    configs, batches = files
    net = MemoryNetwork(fresh(configs, tmp_path))
    try:
        rc = Collector(net)
        query_id = rc.create(spec(epsilon=1.0, no_noise=False))
        frozen, thaw = threading.Event(), threading.Event()

        def freeze(at):
            if at == "uploaded":
                frozen.set()
                thaw.wait(30)

        net.helper(2)._fault = freeze
        threads = upload_all(rc, query_id, batches)
        assert frozen.wait(30)
        rc.wait(query_id, lambda s: s[:2] == [State.FAILED] * 2)  # H1 and H2 gave up on H3
        thaw.set()
        for t in threads:
            t.join()
        assert check_agreement(net, rc, query_id) == "aborted"
    finally:
        net.close()


def test_a_stalled_upload_fails_the_query_everywhere_and_refunds(files, tmp_path):
    configs, batches = files
    net = MemoryNetwork([replace(c, upload_idle_seconds=0.3) for c in fresh(configs, tmp_path)])
    try:
        rc = Collector(net)
        query_id = rc.create(spec(epsilon=1.0, no_noise=False))
        stalled, interrupted = threading.Event(), threading.Event()

        def chunks():
            yield batches[1][:100]
            stalled.set()
            interrupted.wait(30)  # the collector stops sending; the watchdog's interrupt ends it
            raise ConnectionError("stream cancelled")

        with pytest.raises(IpaError, match=r"no upload data for 0.3 s"):
            params = rc.params(query_id)
            net.helper(1).upload(query_id, rc.tokens[1], params, chunks(), interrupt=interrupted.set)
        assert rc.wait(query_id, lambda s: all(x.final for x in s)) == [State.FAILED] * 3
        assert spends(net, query_id) == ["refunded"] * 3
    finally:
        net.close()
