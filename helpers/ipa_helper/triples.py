"""Worker triples: worker k of H1, H2 and H3 run an MPC phase on one slice of rows among themselves.

A helper with ``[cluster] workers = W`` (``ipa_helper.cluster``) runs the
query on its W workers: worker k decoded slice k of the reports
(:func:`ipa.mpc.collective.slices`, the same cut at every helper: it depends
only on n and W) and keeps the rows of it that all three helpers keep, its
block, and worker k of the three helpers (a *triple*) run
:func:`ipa.attribution.pipeline.run_query` in its distributed form on it:
MPC messages go only within the triple, and rows move between the W workers
of each helper (:mod:`ipa_helper.siblings`). Each worker returns its share of
its triple's sums; the coordinator adds the W of them.

The triple's transport is the helpers' own: each worker serves the ``Peer``
service (:class:`TripleServer`, only ``Send``) on a port it picks,
with its helper's TLS identity and the two peer helpers' certificates pinned
(a worker of Hi is inside Hi's trust domain), and sends with
:class:`~ipa_helper.transport.GrpcPeer` over mutual TLS. It accepts only
messages of its own triple (steps under ``w<k>/``) from a peer whose
certificate names the claimed sender. The coordinators tell each other their
workers' addresses once per query, over their own peer channel
(:func:`exchange_addresses`): a worker Ray restarted listens on a new port,
so an address is good for the query that asked it.

PRSS: worker k's seeds are ``HMAC(seed, "worker/k")`` of the query's two
seeds (:meth:`ipa.mpc.prss.PRSS.derived_seeds`), so the triple needs no seed
exchange, and each triple's randomness is independent of the others' and of
the coordinators'.
"""

from __future__ import annotations

import contextlib
import socket
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from ipa.attribution.config import QueryConfig
from ipa.attribution.pipeline import QUERY_STEPS, NoiseHook, PhaseHook, QueryResult, run_query
from ipa.attribution.rows import SharedRows
from ipa.errors import ConfigError, IpaError, TransportError
from ipa.mpc.channel import Channel, Peer
from ipa.mpc.collective import Collective
from ipa.mpc.context import Context
from ipa.mpc.prss import PRSS
from ipa.mpc.verifier import Verifier
from ipa_helper.config import HelperConfig
from ipa_helper.mailbox import Mailbox
from ipa_helper.peers import PeerChannel, PeerLink
from ipa_helper.transport import GrpcPeer, add_peer_servicer, caller_index, decode_message, peer_channel
from ipa_rpc import MESSAGE_LIMITS
from ipa_rpc.v1 import peer_pb2, peer_pb2_grpc

__all__ = [
    "ADDRESS_BYTES",
    "PartResult",
    "QueryPart",
    "TripleRun",
    "TripleServer",
    "WorkerIdentity",
    "exchange_addresses",
]

ADDRESS_BYTES = 128
"""Bytes per worker address in the coordinators' exchange (``host:port``, zero-padded)."""

_REMEMBERED = 256  # ended queries whose late messages a worker still drops


@dataclass(frozen=True)
class WorkerIdentity:
    """What a worker of helper ``party`` needs to serve and call its triple: its helper's TLS identity.

    ``insecure`` (``ipa-helper --insecure``, loopback development) serves and
    calls without TLS. ``host`` is the interface to listen on (the helper's
    ``peer_listen`` host).
    """

    party: int
    host: str
    insecure: bool
    key: bytes = field(default=b"", repr=False)
    cert: bytes = b""
    peer_certs: dict[int, bytes] = field(default_factory=dict)
    """Each peer helper's certificate, by its 0-based party index."""

    @classmethod
    def of(cls, config: HelperConfig, insecure: bool) -> WorkerIdentity:
        host = config.peer_listen.rpartition(":")[0].strip("[]")
        if insecure:
            return cls(config.party, host, True)
        try:
            key, cert = Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes()  # type: ignore[arg-type]
            peers = {p.index - 1: Path(p.cert).read_bytes() for p in config.peers}  # type: ignore[arg-type]
        except OSError as exc:
            raise ConfigError(f"cannot read a TLS file for the workers: {exc}") from None
        return cls(config.party, host, False, key, cert, peers)


@dataclass(frozen=True)
class TripleRun:
    """What every part of a query that worker k runs with its triple carries."""

    query_id: str
    seeds: tuple[bytes, bytes] = field(repr=False)
    """The triple's PRSS seeds (prev, next): ``HMAC(seed, "worker/k")`` of the query's."""
    peers: dict[int, str]
    """The addresses of the triple's two other workers, by ``Peer.NEXT``/``Peer.PREV`` value."""
    security_bits: int | None
    """The triple's soundness budget in malicious mode; None in semi-honest mode."""
    timeout: float


@dataclass(frozen=True)
class QueryPart:
    """What worker k of one helper needs to run its part of a query."""

    run: TripleRun
    rows: SharedRows | None = field(repr=False)
    """Block k of the query's rows (this helper's two components of each share column); None: the
    rows the worker decoded for the query (``ipa_helper.cluster``), which it puts here."""
    config: QueryConfig
    noise: NoiseHook
    """The helper's noise, which triple 0 adds (``run_query``, distributed)."""


@dataclass(frozen=True)
class PartResult:
    """What a worker returns from its part of a query: its triple's result and what it sent."""

    result: QueryResult
    """This worker's share of its triple's sums (noised by triple 0), seconds per phase, and in
    malicious mode the soundness of its triple's checks."""
    bytes_sent: int
    """MPC bytes sent to the triple's two peers (at other helpers)."""
    pid: int
    sibling_bytes: int = 0
    """Bytes sent to the other workers of its own helper (the distributed phases' rows)."""
    sibling_bytes_in: int = 0
    """Bytes received from them."""


class _TripleServicer(peer_pb2_grpc.PeerServicer):
    """The ``Peer`` service of worker ``k``: its triple's MPC messages (a query ends through Ray)."""

    def __init__(self, identity: WorkerIdentity, k: int, mailbox: Mailbox) -> None:
        pinned = {cert.strip(): party for party, cert in identity.peer_certs.items()}
        self._pinned = None if identity.insecure else pinned
        self._prefix = f"w{k}/"
        self._mailbox = mailbox
        self._neighbours = (Peer.NEXT.of(identity.party), Peer.PREV.of(identity.party))

    def Send(self, request_iterator, context):  # noqa: N802
        caller = caller_index(context, self._pinned)
        try:
            query_id, step, sender, arrays = decode_message(request_iterator)
        except (TransportError, ValueError, TypeError) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if sender not in self._neighbours or caller not in (None, sender):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "caller is not one of this helper's peers")
        if not step.startswith(self._prefix):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"this worker serves only steps {self._prefix}…")
        try:
            self._mailbox.put(query_id, sender, step, arrays)
        except TransportError as exc:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        return peer_pb2.SendAck()


class TripleServer:
    """Worker ``k``'s ``Peer`` server and mailbox, and its parts of queries (one per call)."""

    def __init__(self, identity: WorkerIdentity, k: int) -> None:
        self.identity, self.k = identity, k
        self.mailbox = Mailbox(lambda s: f"H{s + 1}'s worker w{k}", remember=_REMEMBERED)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=MESSAGE_LIMITS)
        add_peer_servicer(_TripleServicer(identity, k, self.mailbox), self._server)
        bind = f"[{identity.host}]:0" if ":" in identity.host else f"{identity.host}:0"
        if identity.insecure:
            port = self._server.add_insecure_port(bind)
        else:
            roots = b"".join(identity.peer_certs.values())
            credentials = grpc.ssl_server_credentials(
                [(identity.key, identity.cert)], root_certificates=roots, require_client_auth=True
            )
            port = self._server.add_secure_port(bind, credentials)
        if port == 0:
            raise TransportError(f"worker w{k} cannot listen on {identity.host}")
        self._server.start()
        host = identity.host if identity.host not in ("", "0.0.0.0", "::") else _node_address()
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def run_query(
        self, part: QueryPart, pid: int, collective: Collective, on_phase: PhaseHook | None = None
    ) -> PartResult:
        """Run :func:`~ipa.attribution.pipeline.run_query` on block k at this worker's root context
        (its triple's channel, PRSS and verifier, its helper's ``collective``): in malicious mode
        every product is verified before the sums are returned. A failure ends the query at this
        worker (its triple's messages are dropped, now and later)."""
        run = part.run
        channels = {Peer(p): self._grpc_channel(Peer(p), address) for p, address in run.peers.items()}
        try:
            links: dict[Peer, PeerLink] = {
                p: GrpcPeer(p.of(self.identity.party), ch, run.timeout)
                for p, ch in channels.items()
            }
            channel: Channel = PeerChannel(
                self.identity.party, run.query_id, links, self.mailbox, run.timeout
            )
            verifier = None if run.security_bits is None else Verifier(security_bits=run.security_bits)
            ctx = Context(
                self.identity.party, channel, PRSS(*run.seeds), step=f"w{self.k}", steps=QUERY_STEPS,
                verifier=verifier, collective=collective,
            )  # fmt: skip
            if part.rows is None:
                raise IpaError("a part of a query reached its triple without rows")
            result = run_query(ctx, part.rows, part.config, part.noise, on_phase)
            return PartResult(result, channel.stats.total_bytes, pid, collective.stats.total_bytes)
        except BaseException:
            self.end(run.query_id, "the worker's part of the query failed")
            raise
        finally:
            for ch in channels.values():
                ch.close()

    def end(self, query_id: str, reason: str) -> None:
        """Wake this query's receivers and drop its messages, now and later (remembered for a while)."""
        self.mailbox.abort(query_id, reason)

    def _grpc_channel(self, peer: Peer, address: str) -> grpc.Channel:
        me, index = self.identity, peer.of(self.identity.party)
        tls = None if me.insecure else (me.key, me.cert, me.peer_certs[index])
        return peer_channel(address, index + 1, MESSAGE_LIMITS, tls)

    def stop(self) -> None:
        self._server.stop(None)


def _node_address() -> str:
    with contextlib.suppress(Exception):
        import ray

        return str(ray.util.get_node_ip_address())
    return socket.gethostbyname(socket.gethostname())


def _encode(addresses: list[str]) -> np.ndarray:
    out = np.zeros((len(addresses), ADDRESS_BYTES), np.uint8)
    for k, address in enumerate(addresses):
        raw = address.encode()
        if len(raw) > ADDRESS_BYTES:
            raise ConfigError(f"worker address {address!r} is longer than {ADDRESS_BYTES} bytes")
        out[k, : len(raw)] = np.frombuffer(raw, np.uint8)
    return out


def _decode(table: np.ndarray, sender: int) -> list[str]:
    addresses = [bytes(row).rstrip(b"\0").decode("ascii", "replace") for row in table]
    for address in addresses:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise TransportError(f"H{sender + 1} sent a malformed worker address")
    return addresses


def exchange_addresses(channel: Channel, step: str, addresses: list[str]) -> dict[Peer, list[str]]:
    """Tell both peer coordinators this helper's W worker addresses; return theirs, by neighbour.

    1 round, W·128 bytes to each peer. The helpers must have the same W: a
    peer with another number of workers makes this a TransportError
    ("wrong layout").
    """
    mine = _encode(addresses)
    for peer in Peer:
        channel.send(step, peer, [mine])
    theirs: dict[Peer, list[str]] = {}
    for peer in Peer:
        (table,) = channel.receive(step, peer, [mine])
        theirs[peer] = _decode(table, peer.of(channel.party))
    return theirs
