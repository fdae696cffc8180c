"""``ipa-helper --config FILE [--insecure]``: run one helper until SIGTERM or Ctrl-C.

Two gRPC servers: the public one (Query, Budget and health services) for
report collectors, mutual TLS with client certificates of the network's
collector CA (``ipa_helper.collectors`` says who may do what), and the peer
one (Peer service, mutual TLS pinned to the two configured peers'
certificates). ``--insecure`` runs both without TLS and is
for development on loopback only.

Both ports are bound exclusively (``grpc.so_reuseport`` off) and before the
ledger is opened: a second helper started on ports in use exits with status 2
and says which port is taken, without touching the running helper's ledger.

Two environment switches exist for tests only and are unset in production:
``IPA_FAILPOINT`` (kill or stop the process at a point of a query) and
``IPA_TAMPER=forward:<epsilon|cap>`` (the leader forwards its peers a query
with ε doubled or the cap one higher: a corrupt leader, which the parameter
digest in each helper's upload must catch).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ipa.dp.accounting import EpochBudget
from ipa.errors import ConfigError, IpaError
from ipa.mpc.channel import Peer
from ipa.mpc.memory import Tamper
from ipa.network import read_key_registry
from ipa.query import QuerySpec
from ipa_helper import logs
from ipa_helper.allocator import tune_malloc
from ipa_helper.cluster import Cluster, start_cluster
from ipa_helper.collectors import Collectors
from ipa_helper.config import HelperConfig, load_config
from ipa_helper.decode import make_decoder
from ipa_helper.helper import Helper
from ipa_helper.ledger import BudgetLedger
from ipa_helper.peers import MessageHook, PeerLink
from ipa_helper.services import BudgetServicer, PeerServicer, QueryServicer
from ipa_helper.transport import GrpcPeer, add_peer_servicer, caller_index, peer_channel
from ipa_helper.triples import WorkerIdentity
from ipa_rpc import MESSAGE_LIMITS
from ipa_rpc.v1 import budget_pb2_grpc, query_pb2_grpc

__all__ = ["RunningHelper", "main", "start"]

_OPTIONS = [
    *MESSAGE_LIMITS,  # A restarted peer is found again within two seconds, not after gRPC's default minutes.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
# grpc sets SO_REUSEPORT by default: a second helper on the same ports would start and share them.
_SERVER_OPTIONS = [*_OPTIONS, ("grpc.so_reuseport", 0)]


@dataclass
class RunningHelper:
    helper: Helper
    public: grpc.Server
    peer: grpc.Server
    channels: list[grpc.Channel]
    cluster: Cluster | None = None

    def stop(self, grace: float | None = 2.0) -> None:
        if self.cluster is not None:
            self.cluster.interrupt()  # a query waiting for a worker ends now, not when it answers
        try:
            self.helper.shut_down()  # before the ledger closes: workers may still commit or refund
            self.public.stop(grace)
            self.peer.stop(grace).wait()
            for channel in self.channels:
                channel.close()
            self.helper.ledger.close()
        finally:
            if self.cluster is not None:
                self.cluster.shut_down()


def _read(path: Path | None, what: str) -> bytes:
    try:
        return path.read_bytes()  # type: ignore[union-attr]
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None


def _peer_channels(config: HelperConfig, insecure: bool) -> dict[int, grpc.Channel]:
    channels = {}
    for peer in config.peers:
        tls = None
        if not insecure:
            key, cert = _read(config.tls_key, "TLS key"), _read(config.tls_cert, "TLS certificate")
            tls = (key, cert, _read(peer.cert, f"H{peer.index}'s certificate"))
        channels[peer.index] = peer_channel(peer.address, peer.index, _OPTIONS, tls)
    return channels


def _identifier(config: HelperConfig, insecure: bool) -> Callable[[grpc.ServicerContext], int | None]:
    """Map a peer call to the caller's party index by the certificate it presented."""
    pinned = (
        None if insecure else {_read(p.cert, "peer certificate").strip(): p.index - 1 for p in config.peers}
    )
    return lambda context: caller_index(context, pinned)


def _bind(server: grpc.Server, address: str, what: str, credentials: grpc.ServerCredentials | None) -> None:
    """Listen on ``address``; ConfigError naming it if the port is taken or the address is not ours."""
    try:
        port = (
            server.add_insecure_port(address)
            if credentials is None
            else server.add_secure_port(address, credentials)
        )
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigError(
            f"cannot listen on {address} ({what}): the port is in use (another helper running?) "
            "or the address is not one of this machine's"
        )


def _listen(public: grpc.Server, peer: grpc.Server, config: HelperConfig, insecure: bool) -> None:
    if insecure:
        _bind(public, config.listen, "listen, for report collectors", None)
        _bind(peer, config.peer_listen, "peer_listen, for the other helpers", None)
        return
    own = [(_read(config.tls_key, "TLS key"), _read(config.tls_cert, "TLS certificate"))]
    roots = b"".join(_read(p.cert, f"H{p.index}'s certificate") for p in config.peers)
    if config.collector_ca is None:
        raise ConfigError("[tls] has no collector_ca: the report collectors' CA (re-run ipa keygen)")
    # The collectors' CA, and the helper's own certificate for its health check
    # (ipa_helper.health): neither is a collector unless its fingerprint is configured.
    collector_ca = _read(config.collector_ca, "report collectors' CA certificate") + b"\n" + own[0][1]
    public_credentials = grpc.ssl_server_credentials(
        own, root_certificates=collector_ca, require_client_auth=True
    )
    _bind(public, config.listen, "listen, for report collectors", public_credentials)
    peer_credentials = grpc.ssl_server_credentials(own, root_certificates=roots, require_client_auth=True)
    _bind(peer, config.peer_listen, "peer_listen, for the other helpers", peer_credentials)


def _failpoint(config: HelperConfig) -> Callable[[str], None] | None:
    """Fault injection for tests: ``IPA_FAILPOINT=<point>:<kill|stop>`` kills or stops this process there.

    Points (in order): uploaded, computed, stored, voted, told_one, told_both,
    committed (see ``ipa_helper.helper``); ``worker`` and ``worker_<phase>``
    are a Ray worker's (``ipa_helper.cluster``). Several
    points may be given, separated by commas. Unset in production.
    """
    spec = os.environ.get("IPA_FAILPOINT", "")
    if not spec:
        return None
    signals = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP}
    points: dict[str, str] = {}
    for item in spec.split(","):
        point, _, action = item.partition(":")
        action = action.partition("@")[0]  # worker:stop@N, see ipa_helper.cluster
        if action not in signals:
            raise ConfigError(f"IPA_FAILPOINT must be <point>:kill or <point>:stop, got {spec!r}")
        points[point] = action
    fired = threading.Event()

    def fault(at: str) -> None:
        if at in points and not fired.is_set():
            fired.set()
            logs.event(config.index, "failpoint", point=at, action=points[at])
            os.kill(os.getpid(), signals[points[at]])

    return fault


_TAMPERS: dict[str, Callable[[QuerySpec], QuerySpec]] = {
    "epsilon": lambda spec: replace(spec, epsilon=2 * spec.epsilon),
    "cap": lambda spec: replace(spec, config=replace(spec.config, cap=spec.config.cap + 1)),
}


def _tamper(config: HelperConfig) -> Callable[[QuerySpec], QuerySpec] | None:
    """Tests only: ``IPA_TAMPER=forward:<field>`` makes this leader forward altered parameters.

    ``epsilon`` doubles ε, ``cap`` adds 1 to the cap, in what H1 sends H2 and H3
    at prepare (its own copy stays the collector's). Unset in production.
    """
    spec = os.environ.get("IPA_TAMPER", "")
    if not spec or spec.startswith("message:"):  # message: is _message_tamper's
        return None
    where, _, field = spec.partition(":")
    if where != "forward" or field not in _TAMPERS:
        raise ConfigError(f"IPA_TAMPER must be forward:{'|'.join(_TAMPERS)} or message:<step>, got {spec!r}")
    alter = _TAMPERS[field]

    def forward(query: QuerySpec) -> QuerySpec:
        logs.event(config.index, "tamper", forward=field)
        return alter(query)

    return forward


def _message_tamper(config: HelperConfig) -> MessageHook | None:
    """Tests only: ``IPA_TAMPER=message:<STEP>`` makes this helper add 1 to one word it sends at STEP.

    The first word of the first non-empty array of the first MPC message this
    process sends at step path STEP (``ipa simulate --list-steps`` prints
    them), once per process: the next query runs honestly. A corrupt helper,
    for the end-to-end test of malicious mode. Unset in production.
    """
    spec = os.environ.get("IPA_TAMPER", "")
    if not spec.startswith("message:"):
        return None
    step = spec.removeprefix("message:")
    if not step:
        raise ConfigError(f"IPA_TAMPER must be message:<step>, got {spec!r}")
    tamper, fired = Tamper(config.party, step), threading.Event()

    def alter(at: str, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if at != step or fired.is_set():
            return arrays
        altered = tamper.apply(arrays[:-1])  # never the trailing depth word
        if altered is None:
            return arrays
        fired.set()
        logs.event(config.index, "tamper", step=at)
        return [*altered, arrays[-1]]

    return alter


def start(config: HelperConfig, insecure: bool = False) -> RunningHelper:
    """Start both servers of one helper; returns once they listen."""
    if not insecure and not config.secure:
        raise ConfigError("the config has no [tls] section: add one, or run with --insecure")
    public = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=_SERVER_OPTIONS)
    peer = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=_SERVER_OPTIONS)
    try:
        _listen(public, peer, config, insecure)  # before the ledger: a duplicate must not recover it
    except ConfigError:
        public.stop(None)
        peer.stop(None)
        raise
    try:
        cluster = start_cluster(config)  # in this (main) thread; None for [cluster] workers = 1
    except ConfigError:
        public.stop(None)
        peer.stop(None)
        raise
    try:
        return _start(config, insecure, public, peer, cluster)
    except BaseException:
        if cluster is not None:
            cluster.shut_down()
        raise


def _start(
    config: HelperConfig, insecure: bool, public: grpc.Server, peer: grpc.Server, cluster: Cluster | None
) -> RunningHelper:
    channels = _peer_channels(config, insecure)
    links: dict[Peer, PeerLink] = {
        p: GrpcPeer(p.of(config.party), channels[p.of(config.party) + 1], config.timeout_seconds)
        for p in Peer
    }
    budget = EpochBudget.of(config.epoch_budget, config.delta)
    ledger = BudgetLedger(config.data_dir / "budget.sqlite", budget.units, budget.describe)
    refunded = ledger.recover()
    decoder = make_decoder(config)
    if cluster is not None:
        cluster.identity = WorkerIdentity.of(config, insecure)
        cluster.keys = read_key_registry(config.hpke_keys)
    helper = Helper(
        config,
        links,
        decoder,
        ledger,
        fault=_failpoint(config),
        forward=_tamper(config),
        alter=_message_tamper(config),
        distributed=cluster,
    )

    collectors = Collectors(config.collectors, insecure=insecure)
    query_pb2_grpc.add_QueryServicer_to_server(QueryServicer(helper, collectors), public)
    budget_pb2_grpc.add_BudgetServicer_to_server(BudgetServicer(helper, collectors, budget), public)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, public)
    add_peer_servicer(PeerServicer(helper, _identifier(config, insecure), collectors), peer)

    public.start()
    peer.start()
    helper.restore()  # committed results served again; undecided queries settled with the peers
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    if refunded:
        logs.event(config.index, "budget_recovered", refunded=len(refunded))
    logs.event(
        config.index, "listening", listen=config.listen, peer_listen=config.peer_listen, tls=not insecure
    )
    return RunningHelper(helper, public, peer, list(channels.values()), cluster)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ipa-helper", description="Run one IPA helper.")
    parser.add_argument("--config", required=True, metavar="FILE", help="the helper's TOML config")
    parser.add_argument("--insecure", action="store_true", help="no TLS: development on loopback only")
    args = parser.parse_args(argv)
    tune_malloc()  # before the first thread (ipa_helper.allocator)
    try:
        running = start(load_config(args.config), args.insecure)
    except IpaError as exc:
        print(f"ipa-helper: error: {exc}", file=sys.stderr)
        return 2
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    try:
        stopped.wait()
    finally:
        running.stop()  # also the Ray cluster of a helper with workers
    logs.event(running.helper.config.index, "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
