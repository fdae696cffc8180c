"""Worker triples without Ray: three real TripleServers (gRPC, mutual TLS on loopback) in one process.

What a worker of each helper runs inside its Ray actor (``ipa_helper.cluster``);
the end-to-end cluster tests run them in three helpers' Ray clusters.
"""

import hashlib
import hmac
import itertools
import threading

import grpc
import numpy as np
import pytest

from ipa.attribution.aggregate import aggregate
from ipa.certs import make_identity
from ipa.errors import TransportError
from ipa.mpc.channel import Peer
from ipa.mpc.collective import MemoryCollectives, slices, worker_label
from ipa.mpc.memory import run_three
from ipa.mpc.prss import PRSS, SEED_BYTES
from ipa.mpc.replicated import concat
from ipa.mpc.sharing import reconstruct, share_arithmetic, share_boolean
from ipa.mpc.testing import opened, run
from ipa_helper.mailbox import Mailbox
from ipa_helper.transport import encode_message
from ipa_helper.triples import (
    AggregationPart,
    PartResult,
    TripleRun,
    TripleServer,
    WorkerIdentity,
    exchange_addresses,
)
from ipa_rpc.v1 import peer_pb2_grpc


@pytest.mark.parametrize(("n", "workers"), [(0, 1), (0, 3), (1, 2), (2, 3), (7, 2), (10, 3), (12, 4), (5, 1)])
def test_slices_cover_the_rows_in_order_and_differ_by_at_most_one(n, workers):
    parts = slices(n, workers)
    assert len(parts) == workers
    assert parts[0].start == 0 and parts[-1].stop == n
    assert all(a.stop == b.start for a, b in itertools.pairwise(parts))
    sizes = [p.stop - p.start for p in parts]
    assert sorted(sizes, reverse=True) == sizes and max(sizes) - min(sizes) <= 1


def test_slices_refuse_bad_arguments():
    with pytest.raises(ValueError, match="workers must be at least 1"):
        slices(10, 0)
    with pytest.raises(ValueError, match="n at least 0"):
        slices(-1, 2)


def _seeds(rng: np.random.Generator) -> list[bytes]:
    return [rng.bytes(SEED_BYTES) for _ in range(3)]


def _prss(seeds: list[bytes], party: int) -> PRSS:
    """Party i shares seed i with party i+1 (its next) and seed i-1 with party i-1 (its prev)."""
    return PRSS(prev_seed=seeds[(party - 1) % 3], next_seed=seeds[party])


def test_worker_seeds_are_the_hmac_of_the_query_seeds_and_shared_by_the_same_neighbours():
    seeds = _seeds(np.random.default_rng(1))
    derived = [_prss(seeds, i).derived_seeds(worker_label(1)) for i in range(3)]
    for i in range(3):
        prev, nxt = derived[i]
        assert nxt == derived[(i + 1) % 3][0]  # the neighbours still share it
        assert nxt == hmac.digest(seeds[i], b"worker/1", hashlib.sha256)[:SEED_BYTES]
        assert prev not in seeds and nxt not in seeds
    others = [_prss(seeds, i).derived_seeds(worker_label(0)) for i in range(3)]
    assert {s for pair in others for s in pair}.isdisjoint({s for pair in derived for s in pair})


def test_a_derived_prss_draws_correlated_zero_sharings():
    seeds = _seeds(np.random.default_rng(2))
    zeros = [_prss(seeds, i).derive("worker/3").zero("w3/x", (50,), np.uint64) for i in range(3)]
    assert not (zeros[0] + zeros[1] + zeros[2]).any()
    assert zeros[0].any()


@pytest.fixture(scope="module")
def servers():
    certs = [make_identity(i + 1, ["127.0.0.1"]) for i in range(3)]
    identities = [
        WorkerIdentity(
            i, "127.0.0.1", False, certs[i][1], certs[i][0], {j: certs[j][0] for j in range(3) if j != i}
        )
        for i in range(3)
    ]
    started = [TripleServer(identity, 1) for identity in identities]
    yield started
    for server in started:
        server.stop()


def _run_triple(servers, query_id, contribution, keys, width, breakdowns, security_bits=None):
    seeds = _seeds(np.random.default_rng(3))
    c, b = share_arithmetic(contribution), share_boolean(keys, width)
    results: list[PartResult | BaseException] = [RuntimeError("did not run")] * 3

    def party(i: int) -> None:
        peers = {p.value: servers[p.of(i)].address for p in Peer}
        try:
            seeds_i = _prss(seeds, i).derived_seeds(worker_label(1))
            run = TripleRun(query_id, seeds_i, peers, security_bits, 30.0)
            part = AggregationPart(run, c[i], b[i], breakdowns)
            results[i] = servers[i].run_aggregate(part, 0)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=party, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.mark.parametrize("security_bits", [None, 42])
def test_a_triple_over_mutual_tls_sums_its_rows_exactly(servers, security_bits):
    rng = np.random.default_rng(4)
    n, width, breakdowns = 300, 4, 13
    contribution = rng.integers(0, 1000, n).astype(np.uint64)
    keys = rng.integers(0, 1 << width, n).astype(np.uint8)
    results = _run_triple(servers, f"q-{security_bits}", contribution, keys, width, breakdowns, security_bits)
    assert all(isinstance(r, PartResult) for r in results), results

    sums = reconstruct([r.output for r in results])
    expected = np.bincount(keys, weights=contribution, minlength=1 << width)[:breakdowns].astype(np.uint64)
    assert sums.tolist() == expected.tolist()
    assert all(r.bytes_sent > 0 for r in results)
    if security_bits is None:
        assert all(r.log2_soundness is None for r in results)
    else:
        assert all(r.log2_soundness is not None and r.log2_soundness <= -security_bits for r in results)


def test_the_slices_sums_add_up_to_the_whole_aggregation():
    """What the coordinator does: the sums of W slices' aggregations, added, are those of all rows."""
    rng = np.random.default_rng(5)
    n, width, breakdowns = 101, 5, 20
    contribution = rng.integers(0, 1 << 40, n).astype(np.uint64)
    keys = rng.integers(0, 1 << width, n).astype(np.uint8)
    parts = []
    for rows in slices(n, 3):
        out = run(
            lambda ctx, c, b: aggregate(ctx, c, b, breakdowns),
            share_arithmetic(contribution[rows]),
            share_boolean(keys[rows], width),
        )
        parts.append(opened(out))
    total = np.sum(parts, axis=0, dtype=np.uint64)
    exact = np.zeros(breakdowns, np.uint64)
    np.add.at(exact, keys[keys < breakdowns], contribution[keys < breakdowns])
    assert total.tolist() == exact.tolist()


def test_a_worker_refuses_a_certificate_not_pinned(servers):
    target = servers[0]
    cert, key = make_identity(2, ["127.0.0.1"])  # H2's name, another key
    credentials = grpc.ssl_channel_credentials(
        root_certificates=target.identity.cert, private_key=key, certificate_chain=cert
    )
    options = [("grpc.ssl_target_name_override", "ipa-helper-1")]
    with grpc.secure_channel(target.address, credentials, options=options) as channel:
        stub = peer_pb2_grpc.PeerStub(channel)
        with pytest.raises(grpc.RpcError):  # the TLS handshake fails
            stub.Send(encode_message("q-x", "w1/aggregate/sums", 1, [np.zeros(3, np.uint64)]), timeout=10)
    with pytest.raises(TransportError):  # nothing was delivered
        target.mailbox.take("q-x", 1, "w1/aggregate/sums", 0.1)


def test_a_worker_refuses_another_triples_step_from_a_pinned_peer(servers):
    target, sender = servers[0], servers[1]
    identity = sender.identity
    credentials = grpc.ssl_channel_credentials(
        root_certificates=target.identity.cert, private_key=identity.key, certificate_chain=identity.cert
    )
    options = [("grpc.ssl_target_name_override", "ipa-helper-1")]
    with grpc.secure_channel(target.address, credentials, options=options) as channel:
        stub = peer_pb2_grpc.PeerStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Send(encode_message("q-y", "w0/aggregate/sums", 1, [np.zeros(3, np.uint64)]), timeout=10)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as claimed:  # H2's certificate claiming to be H3
            stub.Send(encode_message("q-y", "w1/aggregate/sums", 2, [np.zeros(3, np.uint64)]), timeout=10)
        assert claimed.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_the_coordinators_exchange_their_workers_addresses():
    tables = [[f"127.0.0.1:{1000 + 10 * i + k}" for k in range(2)] for i in range(3)]

    def protocol(ctx, _):
        return exchange_addresses(ctx.channel, "setup/workers", tables[ctx.party])

    out = run_three(protocol, [None] * 3).outputs
    for i in range(3):
        assert out[i][Peer.NEXT] == tables[(i + 1) % 3] and out[i][Peer.PREV] == tables[(i - 1) % 3]


def test_an_ended_query_wakes_the_worker_and_drops_late_messages():
    mailbox = Mailbox()
    mailbox.abort("q", "the query failed")
    mailbox.put("q", 1, "w0/x", [np.zeros(1, np.uint64)])
    with pytest.raises(TransportError, match="query aborted: the query failed"):
        mailbox.take("q", 1, "w0/x", 1.0)
    assert mailbox.aborted("q") == "the query failed"


@pytest.fixture(scope="module")
def two_triples():
    """Triples 0 and 1 (worker k of H1, H2, H3): ``[k][i]`` is helper i's worker k."""
    certs = [make_identity(i + 1, ["127.0.0.1"]) for i in range(3)]
    identities = [
        WorkerIdentity(
            i, "127.0.0.1", False, certs[i][1], certs[i][0], {j: certs[j][0] for j in range(3) if j != i}
        )
        for i in range(3)
    ]
    started = [[TripleServer(identity, k) for identity in identities] for k in range(2)]
    yield started
    for triple in started:
        for server in triple:
            server.stop()


@pytest.mark.parametrize("n", [1, 2, 37])
def test_two_triples_sort_their_blocks_moving_rows_within_each_helper_exactly(two_triples, n):
    """What a helper's W = 2 workers do in the sort, without Ray: worker k of each helper sorts block
    k with its triple over mutual TLS, moving rows to its helper's other worker through the helper's
    group (in memory here, ``ipa_helper.siblings`` in a helper); the blocks, put together, are the
    rows in key order, ties in input order."""
    rng = np.random.default_rng(6 + n)
    width, workers = 7, 2
    keys = rng.integers(0, 1 << 4, n).astype(np.uint8)  # few distinct keys: many ties
    values = rng.integers(0, 1 << 40, n).astype(np.uint64)
    seeds = _seeds(rng)
    groups = [MemoryCollectives(workers, _prss(seeds, i), timeout=30.0) for i in range(3)]
    key, value = share_boolean(keys, width), share_arithmetic(values)
    cut = slices(n, workers)
    out: dict[tuple[int, int], PartResult | BaseException] = {}

    def worker(i: int, k: int) -> None:
        peers = {p.value: two_triples[k][p.of(i)].address for p in Peer}
        run = TripleRun(f"q-sort-{n}", _prss(seeds, i).derived_seeds(worker_label(k)), peers, None, 30.0)
        block = [key[i][cut[k]], value[i][cut[k]]]
        try:
            out[i, k] = two_triples[k][i].run_sort(run, block[0], block, 0, groups[i].member(k))
        except BaseException as exc:
            groups[i].abort()
            out[i, k] = exc

    threads = [threading.Thread(target=worker, args=(i, k)) for i in range(3) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(isinstance(r, PartResult) for r in out.values()), out
    order = np.argsort(keys, kind="stable")
    for column, expected in enumerate([keys[order], values[order]]):
        shares = [concat([out[i, k].output[column] for k in range(workers)]) for i in range(3)]
        assert reconstruct(shares).tolist() == expected.tolist()
    for i in range(3):  # each worker's block has its size in the cut; rows crossed inside each helper
        assert [len(out[i, k].output[0]) for k in range(workers)] == [s.stop - s.start for s in cut]
        assert all(out[i, k].bytes_sent > 0 for k in range(workers) if cut[k].stop > cut[k].start)
        assert n < 37 or sum(out[i, k].sibling_bytes for k in range(workers)) > 0
