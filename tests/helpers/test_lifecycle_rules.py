"""The query lifecycle's cross-helper rules, in-process: three real helpers over in-memory peers.

Admission everywhere or nowhere, failure everywhere, commit before "finished",
release only after both peers have finished, and atomic state changes. The
same rules hold over gRPC (tests/helpers/test_lifecycle.py, tests/e2e).
"""

import contextlib
import threading

import numpy as np
import pytest
from memory_world import (
    CONFIG,
    Collector,
    all_final,
    fresh,
    hold,
    memory_configs,
    spec,
    uploads,
    with_settings,
)

from ipa.errors import IpaError
from ipa.reference import attribute_query
from ipa.synthetic import generate
from ipa_helper.memory import MemoryNetwork
from ipa_helper.peers import RefusedError
from ipa_helper.queries import State, UnknownQueryError

EVENTS = generate(300, seed=5, num_breakdowns=4)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("memory-net")
    configs = memory_configs(directory, timeout_seconds=5)
    return directory, configs, uploads(directory, EVENTS)


@pytest.fixture
def net(files, tmp_path):
    _, configs, _ = files
    world = MemoryNetwork(fresh(configs, tmp_path))
    yield world
    world.close()


def spends(net, query_id):
    """Each helper's ledger state for the query ('' if it has none)."""
    states = []
    for party in range(3):
        ledger = net.helper(party).ledger
        found = [s.state for s in ledger.queries("shop.example", 3) if s.query_id == query_id]
        states.append(found[0] if found else "")
    return states


def test_a_query_runs_and_releases_the_reference_sums(net, files):
    _, _, batches = files
    rc = Collector(net)
    query_id = rc.create(spec())
    rc.upload(query_id, batches)
    assert rc.wait_final(query_id) == [State.COMPLETED] * 3
    assert rc.results(query_id).tolist() == attribute_query(EVENTS, CONFIG).tolist()


def test_a_refusal_at_one_peer_refuses_everywhere_and_reserves_nothing(files, tmp_path):
    _, configs, _ = files
    world = MemoryNetwork(with_settings(fresh(configs, tmp_path), 2, epoch_budget=0.5))  # H3 has less budget
    try:
        rc = Collector(world)
        with pytest.raises(RefusedError, match=r"H3 refused the query: privacy budget exceeded"):
            rc.create(spec(epsilon=1.0, no_noise=False))
        (query_id,) = [r.query_id for r in world.helper(0).queries.all()]
        assert [rc.state(query_id, p) for p in (0, 1)] == [State.FAILED, State.FAILED]
        with pytest.raises(UnknownQueryError):
            world.helper(2).queries.get(query_id)
        assert spends(world, query_id) == ["refunded", "refunded", ""]
    finally:
        world.close()


def test_only_the_leader_prepares_queries(net):
    h2_to_h3 = net.helper(1).peers[next(p for p in net.helper(1).peers if p.of(1) == 2)]
    with pytest.raises(RefusedError, match="not one of this helper's peers"):
        h2_to_h3.prepare("q", spec(), bytes(32))


def test_a_bad_upload_at_one_helper_fails_the_query_everywhere_and_refunds(net, files):
    _, _, batches = files
    rc = Collector(net)
    query_id = rc.create(spec(epsilon=1.0, no_noise=False))
    assert spends(net, query_id) == ["reserved"] * 3
    with contextlib.suppress(IpaError):  # H3's upload may come after the failure has reached it
        rc.upload(query_id, [batches[0], b"garbage", batches[2]])
    assert rc.wait_final(query_id) == [State.FAILED] * 3
    errors = [net.helper(p).queries.get(query_id).error for p in range(3)]
    assert "not an upload batch" in errors[1]
    assert all(e.startswith("H2: ") for e in (errors[0], errors[2]))  # the peers name who failed
    assert spends(net, query_id) == ["refunded"] * 3
    with pytest.raises(IpaError, match="no result"):
        net.helper(0).results(query_id, rc.tokens[0])


def outcomes(net, query_id):
    return [net.helper(p).outcome(query_id) for p in range(3)]


def test_every_helper_stores_its_share_and_votes_before_it_says_finished_and_releases_after_both(
    net, files
):
    _, _, batches = files
    rc = Collector(net)
    held = hold(net.helper(2), "release/finished")  # H3's vote waits for the test
    query_id = rc.create(spec(epsilon=1.0, no_noise=False))
    rc.upload(query_id, batches)
    assert held[0].held.wait(30)  # H3 sends to its next peer first, and waits there
    # H3 has its share on disk and has voted ready; nobody can commit or release
    # before all three have voted, and nobody may refund any more on its own.
    assert outcomes(net, query_id)[2] == "ready"
    assert (net.configs[2].data_dir / "results" / f"{query_id}.share").exists()
    assert spends(net, query_id) == ["reserved"] * 3
    assert [rc.state(query_id, p) for p in range(3)] == [State.RUNNING] * 3
    with pytest.raises(IpaError, match="no result: it is running"):
        net.helper(0).results(query_id, rc.tokens[0])
    with pytest.raises(IpaError, match="can no longer be cancelled"):
        net.helper(2).cancel(query_id, rc.tokens[2])
    for link in held:
        link.release()
    assert rc.wait_final(query_id) == [State.COMPLETED] * 3
    assert spends(net, query_id) == ["committed"] * 3
    assert outcomes(net, query_id) == ["committed"] * 3
    assert np.abs(rc.results(query_id) - attribute_query(EVENTS, CONFIG)).max() < 2000


def test_cancel_before_the_upload_ends_it_everywhere_and_refunds(net, files):
    _, _, batches = files
    rc = Collector(net)
    query_id = rc.create(spec(epsilon=1.0, no_noise=False))
    net.helper(1).cancel(query_id, rc.tokens[1])
    assert rc.wait(query_id, all_final) == [State.FAILED, State.CANCELLED, State.FAILED]
    assert spends(net, query_id) == ["refunded"] * 3
    with pytest.raises(IpaError, match="has ended"):
        rc.upload(query_id, batches)


def test_a_cancel_while_the_upload_streams_in_means_the_query_never_runs(net, files):
    _, _, batches = files
    rc = Collector(net)
    query_id = rc.create(spec())
    h1 = net.helper(0)

    def chunks():
        yield batches[0][:100]
        h1.cancel(query_id, rc.tokens[0])  # between two chunks
        yield batches[0][100:]

    with pytest.raises(IpaError, match="has ended"):
        h1.upload(query_id, rc.tokens[0], rc.params(query_id), chunks())
    assert rc.wait(query_id, all_final)[0] is State.CANCELLED
    assert h1.queries.get(query_id).phase == "awaiting_upload"  # it never started


def test_state_changes_are_atomic_under_concurrent_cancels(net):
    rc = Collector(net)
    h1 = net.helper(0)
    for _ in range(20):
        query_id = rc.create(spec())
        record = h1.queries.get(query_id)
        h1.queries.claim_upload(record)
        outcome = []

        def start(record=record, outcome=outcome):
            try:
                h1.queries.start(record, phase="decrypt")
                outcome.append("started")
            except IpaError:
                outcome.append("refused")

        racer = threading.Thread(target=start)
        racer.start()
        h1.cancel(query_id, rc.tokens[0])
        racer.join()
        # Either the start came first (then the cancel ended a running query) or the
        # cancel did (then it never started): never a running query after its cancel.
        assert record.state is State.CANCELLED
        assert outcome == ["started"] or record.phase == "awaiting_upload"


def test_messages_for_a_query_never_prepared_here_are_refused(net):
    with pytest.raises(UnknownQueryError):
        net.helper(1).receive_message("never-prepared", 0, "root", [np.zeros(1, np.uint64)])


def test_the_lifecycle_imports_no_grpc():
    import ast
    from pathlib import Path

    import ipa_helper

    package = Path(ipa_helper.__file__).parent
    for name in ("helper", "peers", "memory", "queries", "ledger", "mailbox"):
        tree = ast.parse((package / f"{name}.py").read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in imported if m.split(".")[0] in ("grpc", "ipa_rpc")}, name
