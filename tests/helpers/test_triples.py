"""Worker triples without Ray: three real TripleServers (gRPC, mutual TLS on loopback) in one process.

What a worker of each helper runs inside its Ray actor (``ipa_helper.cluster``);
the end-to-end cluster tests run them in three helpers' Ray clusters.
"""

import functools
import hashlib
import hmac
import itertools
import operator
import threading

import grpc
import numpy as np
import pytest

from ipa.attribution.config import QueryConfig
from ipa.attribution.pipeline import no_noise
from ipa.attribution.rows import share_events
from ipa.certs import make_identity
from ipa.errors import TransportError
from ipa.mpc.channel import Peer
from ipa.mpc.collective import MemoryCollectives, slices, worker_label
from ipa.mpc.memory import run_three
from ipa.mpc.prss import PRSS, SEED_BYTES
from ipa.mpc.sharing import reconstruct
from ipa.reference import attribute_query
from ipa.synthetic import generate
from ipa_helper.mailbox import Mailbox
from ipa_helper.transport import encode_message, send_call
from ipa_helper.triples import (
    PartResult,
    QueryPart,
    TripleRun,
    TripleServer,
    WorkerIdentity,
    exchange_addresses,
)


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
def servers(two_triples):
    """Triple 1: worker 1 of H1, H2 and H3 (``[i]`` is helper i's)."""
    return two_triples[1]


def test_a_worker_refuses_a_certificate_not_pinned(servers):
    target = servers[0]
    cert, key = make_identity(2, ["127.0.0.1"])  # H2's name, another key
    credentials = grpc.ssl_channel_credentials(
        root_certificates=target.identity.cert, private_key=key, certificate_chain=cert
    )
    options = [("grpc.ssl_target_name_override", "ipa-helper-1")]
    with grpc.secure_channel(target.address, credentials, options=options) as channel:
        send = send_call(channel)
        with pytest.raises(grpc.RpcError):  # the TLS handshake fails
            send(encode_message("q-x", "w1/aggregate/sums", 1, [np.zeros(3, np.uint64)]), timeout=10)
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
        send = send_call(channel)
        with pytest.raises(grpc.RpcError) as refused:
            send(encode_message("q-y", "w0/aggregate/sums", 1, [np.zeros(3, np.uint64)]), timeout=10)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as claimed:  # H2's certificate claiming to be H3
            send(encode_message("q-y", "w1/aggregate/sums", 2, [np.zeros(3, np.uint64)]), timeout=10)
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


def _run_triples(triples, query_id, events, config, workers, security_bits=None):
    """Worker k of H1, H2 and H3 (``triples[k]``) run their part of a query on block k over mutual
    TLS, moving rows within each helper through its group (in memory here, ``ipa_helper.siblings``
    in a helper): {(helper, worker): PartResult or the exception raised}."""
    rng = np.random.default_rng(len(events) + workers)
    seeds = _seeds(rng)
    groups = [MemoryCollectives(workers, _prss(seeds, i), timeout=30.0) for i in range(3)]
    shares, cut = share_events(events, config), slices(len(events), workers)
    out: dict[tuple[int, int], PartResult | BaseException] = {}

    def worker(i: int, k: int) -> None:
        peers = {p.value: triples[k][p.of(i)].address for p in Peer}
        seeds_k = _prss(seeds, i).derived_seeds(worker_label(k))
        part = QueryPart(
            TripleRun(query_id, seeds_k, peers, security_bits, 30.0),
            shares[i].block(cut[k]),
            config,
            no_noise,
        )
        try:
            out[i, k] = triples[k][i].run_query(part, 0, groups[i].member(k))
        except BaseException as exc:
            groups[i].abort()
            out[i, k] = exc

    threads = [threading.Thread(target=worker, args=(i, k)) for i in range(3) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


@pytest.mark.parametrize(
    ("n", "workers", "security_bits"), [(0, 2, None), (1, 2, None), (60, 1, None), (90, 2, None), (90, 2, 41)]
)
def test_worker_triples_run_the_whole_query_and_their_sums_add_up_to_the_reference(
    two_triples, n, workers, security_bits
):
    """What a helper's W workers do, without Ray: the W triples' sums, added at each helper (what its
    coordinator does), open to the reference's; in malicious mode each triple is sound to
    2^-security_bits; rows crossed between the workers of each helper."""
    config = QueryConfig(num_breakdowns=8, cap=40, window=3_000, max_events_per_user=4, timestamp_bits=14)
    events = generate(n, seed=n, num_breakdowns=8, timestamp_bits=14, max_user_events=8)
    out = _run_triples(
        two_triples, f"q-{n}-{workers}-{security_bits}", events, config, workers, security_bits
    )
    assert all(isinstance(r, PartResult) for r in out.values()), out
    helpers = [[out[i, k].result.sums for k in range(workers)] for i in range(3)]
    sums = reconstruct([functools.reduce(operator.add, parts) for parts in helpers])
    assert sums.tolist() == attribute_query(events, config).tolist()
    for i, k in out:
        result = out[i, k]
        assert result.bytes_sent > 0 or n == 0
        if security_bits is None:
            assert result.result.log2_soundness is None
        else:
            assert result.result.log2_soundness is not None and result.result.log2_soundness <= -security_bits
    if workers > 1 and n > 1:
        for i in range(3):
            sent = sum(out[i, k].sibling_bytes for k in range(workers))
            assert sent > 0
