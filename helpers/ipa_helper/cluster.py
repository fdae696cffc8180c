"""A helper spread over a Ray cluster: this process is the coordinator of W worker actors.

With ``[cluster] workers = W`` (W > 1) in its config, a helper starts (or
joins) a Ray cluster in its main thread before it serves, creates W worker
actors (``ray::IpaWorker`` in ``ps``), and shuts them and its cluster down
when it stops. ``workers = 1`` (the default) is the single process: Ray is
not imported. See ``docs/scaling.md`` for the design and what is built.

The cluster
-----------
- ``address = ""``: a local cluster owned by this helper process: its own
  temporary directory, its own ``RAY_AUTH_TOKEN`` (Ray's token auth: a
  fresh random token, so three helpers on one machine never share
  ``~/.ray/auth_token``), node address 127.0.0.1 (Ray 2.60 still listens on
  all interfaces: the token is what keeps others out), with W CPUs (one per
  actor) and an object store of ``object_store_bytes``. Its processes are children of
  this one and end with it.
- ``address = "host:port"``: an existing cluster's GCS address; the helper
  connects as a driver (``RAY_AUTH_TOKEN`` from its environment) and its
  actors end when it disconnects. That cluster must lie inside this
  helper's trust domain: its workers hold this helper's HPKE private keys
  and shares, and nothing of it may be reachable by the other helpers.

What the workers do
-------------------
Decryption (:meth:`Cluster.open_many`, the ``opener`` of
:func:`ipa.reports.decode.decode_batch`): the coordinator hash-partitions the
sealed match keys by value (so identical ciphertexts, which a user agent
reuses, meet on one worker and are opened once), sends each worker its
partition through Ray's object store, each worker opens its distinct
messages (:func:`ipa.crypto.opener.open_many`, in its own process), and the
coordinator puts the plaintexts back in row order. Opening is deterministic,
so the result is the same as with W = 1, bit for bit; so is the count of
distinct messages.

The aggregation (:meth:`Cluster.aggregator`, the ``aggregator`` of
:func:`ipa.attribution.pipeline.run_query`): the coordinator cuts the rows
into W contiguous slices (the same cut at every helper), the coordinators
exchange their workers' addresses (one message per query on their peer
channel), and worker k of H1, H2 and H3 run the unchanged aggregation on slice
k as a *worker triple* that talks only within itself over mutual TLS
(:mod:`ipa_helper.triples`), with PRSS seeds ``HMAC(seed, "worker/k")``; in
malicious mode the triple verifies its products before its sums leave the
worker. The coordinator adds the W sums (addition of shares commutes: the
same sums as W = 1). The other MPC phases still run in the coordinator
(docs/scaling.md says what remains).

Faults
------
A worker that dies during a query (killed, out of memory) fails that query
with :class:`WorkerError`, naming the worker (``w<k>``, its pid); the query
then fails at every helper and its ε is refunded, like any other failure.
Ray restarts the actor (``max_restarts=-1``; the failed call is not retried),
so the helper serves the next query. A worker that does not answer (frozen,
or starved) within ``timeout_seconds`` plus one second per
``MIN_OPENS_PER_SECOND`` messages of its part fails the query likewise, and
is killed so that Ray starts a fresh one: a stuck worker never blocks the
queries after it. The aggregation's deadline is ``timeout_seconds`` plus
one second per ``MIN_AGGREGATE_ROWS_PER_SECOND`` rows of a slice; a query
that fails elsewhere meanwhile (a peer aborted it) ends its workers' parts
at once. ``IPA_FAILPOINT=worker:stop`` (or ``worker:kill``; tests only)
makes worker w0 stop (or kill) itself at the start of the first query's
decryption (``worker:stop@N``: of the N-th); ``worker_aggregate:stop@N`` at
the start of its part of the N-th aggregation.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ipa.attribution.pipeline import Aggregator
from ipa.crypto.hpke import PrivateKey
from ipa.crypto.opener import open_many, row_hash
from ipa.errors import ConfigError, IpaError, MaliciousBehaviourError, TransportError
from ipa.mpc.channel import Peer
from ipa.mpc.collective import slices
from ipa.mpc.context import Context
from ipa.mpc.replicated import AShares, BShares
from ipa_helper import logs
from ipa_helper.config import ClusterConfig, HelperConfig
from ipa_helper.siblings import Group, RayCollective, group_mailbox, worker_failure
from ipa_helper.triples import (
    AggregationPart,
    PartResult,
    TripleServer,
    WorkerIdentity,
    exchange_addresses,
    worker_label,
)

__all__ = ["WORKER_NAME", "Cluster", "IpaWorker", "WorkerError", "remote_worker", "start_cluster"]

WORKER_NAME = "IpaWorker"
"""The actor class's name: its processes show in ``ps`` as ``ray::IpaWorker``."""

_START_SECONDS = 120.0  # for the W actors to be up (they import numpy and cryptography)

_START_ATTEMPTS = 3

MIN_OPENS_PER_SECOND = 500
"""The slowest opening rate a worker is allowed before it counts as stuck (a core opens ~10k X25519/s)."""

MIN_AGGREGATE_ROWS_PER_SECOND = 1000
"""The slowest aggregation rate a worker is allowed (a core aggregates ~10^5 rows/s semi-honest,
and malicious mode costs up to ~65 times that)."""

Cancelled = Callable[[], "str | None"]
"""Why the query has ended elsewhere (a peer aborted it), or None while it runs."""


class WorkerError(IpaError):
    """A worker actor died or failed during a query: the query fails (and is refunded)."""


class IpaWorker:
    """One worker actor of a helper. It keeps nothing of a query after its call.

    Threaded (``max_concurrency``): :meth:`abort` runs while :meth:`aggregate` waits, and
    :meth:`deliver` (a sibling's message) while this worker's part waits for it.
    """

    def __init__(self) -> None:
        self._triple: TripleServer | None = None
        self._group_box = group_mailbox()
        self._lock = threading.Lock()

    def listen(self, identity: WorkerIdentity, k: int) -> str:
        """Serve worker triple ``k``'s Peer service (started once per process); its address."""
        with self._lock:
            if self._triple is None:
                self._triple = TripleServer(identity, k)
            return self._triple.address

    def aggregate(self, part: AggregationPart, fault: str = "") -> PartResult | tuple[str, str]:
        """This worker's part of the aggregation with its triple; (kind, what) if it failed."""
        if fault:
            os.kill(os.getpid(), signal.SIGSTOP if fault == "stop" else signal.SIGKILL)
        if self._triple is None:
            return "error", "the worker does not listen for its triple (restarted?)"
        try:
            return self._triple.run_aggregate(part, os.getpid())
        except MaliciousBehaviourError as exc:
            return "malicious", exc.check
        except IpaError as exc:
            return "error", str(exc)

    def abort(self, query_id: str, reason: str) -> None:
        """End this worker's part of ``query_id`` now (it failed elsewhere)."""
        self._group_box.abort(query_id, reason)
        if self._triple is not None:
            self._triple.end(query_id, reason)

    def deliver(self, query_id: str, sender: int, step: str, arrays: list[np.ndarray]) -> None:
        """A message from sibling worker ``sender`` of this helper (:mod:`ipa_helper.siblings`)."""
        self._group_box.put(query_id, sender, step, arrays)

    def _collective(self, query_id: str, group: Group, timeout: float) -> RayCollective:
        """This worker's exchanges with its siblings in ``query_id``."""
        return RayCollective(query_id, group, self._group_box, timeout)

    def pid(self) -> int:
        return os.getpid()

    def peak_rss_bytes(self) -> int:
        """This worker process's peak resident memory (``VmHWM``), for benchmarks."""
        return _peak_rss_bytes()

    def open(
        self,
        keys: Mapping[int, PrivateKey],
        infos: Mapping[int, bytes],
        key_ids: np.ndarray,
        sealed: np.ndarray,
        plaintext_length: int,
        fault: str = "",
    ) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Open one partition in this process: (plaintexts, ok, distinct messages, this worker's pid)."""
        if fault:
            os.kill(os.getpid(), signal.SIGSTOP if fault == "stop" else signal.SIGKILL)
        plain, ok, distinct = open_many(keys, infos, key_ids, sealed, plaintext_length, workers=1)
        return plain, ok, distinct, os.getpid()


def remote_worker(ray: ModuleType, workers: int, cls: type = IpaWorker) -> Any:
    """The worker actor class as Ray runs it: one CPU each, restarted by Ray when it dies (the
    failed call is not retried), and threaded: beside its part, a worker serves its coordinator's
    ``abort`` and each of its W - 1 siblings' ``deliver`` and ``pid`` (their checks that it runs)."""
    concurrency = 2 * workers + 4
    return ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=0, max_concurrency=concurrency)(cls)


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def partition(key_ids: np.ndarray, sealed: np.ndarray, workers: int) -> np.ndarray:
    """(n,) int64: the worker of each row, a function of its value (``key id ‖ sealed``) alone."""
    hashed = row_hash(np.asarray(key_ids, dtype=np.uint8)[:, None], sealed)
    return ((hashed >> np.uint64(33)) % np.uint64(workers)).astype(np.int64)


class Cluster:
    """A helper's Ray cluster (local or joined) and its W worker actors."""

    def __init__(
        self, index: int, config: ClusterConfig, ray: ModuleType, actors: list[Any], pids: list[int],
        temp_dir: str | None, timeout_seconds: float = 120.0,
    ) -> None:  # fmt: skip
        self.index = index
        self.timeout_seconds = timeout_seconds
        self.config = config
        self._ray = ray
        self._actors = actors
        self.pids = pids
        self._temp_dir = temp_dir
        self._lock = threading.Lock()
        self._closed = False
        self._closing = threading.Event()
        self._fault, self._fault_at, self._fault_phase = _worker_fault()
        self._calls = {"decryption": 0, "aggregation": 0}
        self.identity: WorkerIdentity | None = None
        """What the workers serve their triples with (set by the server before it serves)."""
        self._triple_bytes: dict[str, int] = {}

    @property
    def workers(self) -> int:
        return len(self._actors)

    def open_many(
        self,
        keys: Mapping[int, PrivateKey],
        infos: Mapping[int, bytes],
        key_ids: np.ndarray,
        sealed: np.ndarray,
        plaintext_length: int,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """:func:`ipa.crypto.opener.open_many` over the workers; WorkerError if one fails."""
        n = len(key_ids)
        plain = np.zeros((n, plaintext_length), dtype=np.uint8)
        ok = np.zeros(n, dtype=bool)
        if n == 0:
            return plain, ok, 0
        owner = partition(key_ids, sealed, self.workers)
        order = np.argsort(owner, kind="stable")
        bounds = np.searchsorted(owner[order], np.arange(self.workers + 1))
        shared = (self._ray.put(dict(keys)), self._ray.put(dict(infos)))  # once, not once per worker
        self._calls["decryption"] += 1
        calls = []
        for k, actor in enumerate(self._actors):
            rows = order[bounds[k] : bounds[k + 1]]
            if len(rows):
                fault = self._take_fault(k, "decryption")
                ref = actor.open.remote(*shared, key_ids[rows], sealed[rows], plaintext_length, fault)
                calls.append((k, rows, ref))
        distinct = 0
        sent = key_ids.nbytes + sealed.nbytes  # the rows' columns, each to one worker
        received = 0
        started = time.monotonic()
        for k, rows, ref in calls:
            limit = self.timeout_seconds + len(rows) / MIN_OPENS_PER_SECOND
            opened, good, count, pid = self._get(k, ref, started + limit, limit, "decryption")
            plain[rows], ok[rows] = opened, good
            distinct += count
            received += opened.nbytes + good.nbytes
            self.pids[k] = pid
        per_worker = ",".join(str(int(bounds[k + 1] - bounds[k])) for k in range(self.workers))
        moved = {"bytes_out": sent, "bytes_in": received}
        logs.event(self.index, "workers_opened", rows=per_worker, distinct=distinct, **moved)
        return plain, ok, distinct

    def aggregator(self, query_id: str, cancelled: Cancelled) -> Aggregator:
        """The aggregation of query ``query_id`` on the worker triples (module docstring).

        ``cancelled`` says when the query has ended elsewhere: the workers'
        parts are then ended and the call fails at once.
        """

        def run(ctx: Context, contribution: AShares, breakdown_key: BShares, num_breakdowns: int) -> AShares:
            return self._aggregate(query_id, cancelled, ctx, contribution, breakdown_key, num_breakdowns)

        return run

    def _aggregate(
        self, query_id: str, cancelled: Cancelled, ctx: Context, contribution: AShares,
        breakdown_key: BShares, num_breakdowns: int,
    ) -> AShares:  # fmt: skip
        if self.identity is None:
            raise ConfigError("the cluster's workers have no TLS identity to serve their triples with")
        started = time.monotonic()
        listening = [actor.listen.remote(self.identity, k) for k, actor in enumerate(self._actors)]
        limit = self.timeout_seconds
        addresses = [
            self._get(k, ref, started + limit, limit, "aggregation", cancelled)
            for k, ref in enumerate(listening)
        ]
        peers = exchange_addresses(ctx.channel, "setup/workers", addresses)
        self._calls["aggregation"] += 1
        bits = None if ctx.verifier is None else ctx.verifier.security_bits
        calls, sent, cut = [], 0, slices(len(contribution), self.workers)
        for k, rows in enumerate(cut):
            if rows.stop == rows.start:
                continue  # fewer rows than workers: every helper leaves the same triples out
            c = (
                np.ascontiguousarray(contribution.left[rows]),
                np.ascontiguousarray(contribution.right[rows]),
            )
            b = (
                np.ascontiguousarray(breakdown_key.left[rows]),
                np.ascontiguousarray(breakdown_key.right[rows]),
                breakdown_key.width,
            )
            sent += c[0].nbytes + c[1].nbytes + b[0].nbytes + b[1].nbytes
            part = AggregationPart(
                query_id, ctx.prss.derived_seeds(worker_label(k)), {p.value: peers[p][k] for p in Peer},
                c, b, num_breakdowns, bits, self.timeout_seconds,
            )  # fmt: skip
            ref = self._actors[k].aggregate.remote(part, self._take_fault(k, "aggregation"))
            calls.append((k, rows, ref))
        parts = self._gather(query_id, cancelled, calls)
        left = np.zeros(num_breakdowns, np.uint64)
        right = np.zeros(num_breakdowns, np.uint64)
        for result in parts:
            left += result.left  # uint64 wraps: shares of the sum of the slices' sums
            right += result.right
        with self._lock:
            self._triple_bytes[query_id] = sum(p.bytes_sent for p in parts)
            while len(self._triple_bytes) > 64:  # a query that failed after its aggregation never asks
                del self._triple_bytes[next(iter(self._triple_bytes))]
        soundness = [p.log2_soundness for p in parts if p.log2_soundness is not None]
        logs.event(
            self.index,
            "workers_aggregated",
            rows=",".join(str(r.stop - r.start) for r in cut),
            bytes_out=sent,
            bytes_in=sum(p.left.nbytes + p.right.nbytes for p in parts),
            peer_bytes=",".join(str(p.bytes_sent) for p in parts),
            **({"log2_soundness": ",".join(f"{s:.1f}" for s in soundness)} if soundness else {}),
        )
        return AShares(left, right)

    def triple_bytes(self, query_id: str) -> int:
        """The MPC bytes this helper's workers sent their triples' peers in ``query_id`` (once; 0 if none)."""
        with self._lock:
            return self._triple_bytes.pop(query_id, 0)

    def _gather(
        self, query_id: str, cancelled: Cancelled, calls: list[tuple[int, slice, Any]]
    ) -> list[PartResult]:
        """Each worker's part; on any failure every part still running is ended, and the call fails."""
        started, parts = time.monotonic(), []
        try:
            for k, rows, ref in calls:
                limit = self.timeout_seconds + (rows.stop - rows.start) / MIN_AGGREGATE_ROWS_PER_SECOND
                part = self._get(k, ref, started + limit, limit, "aggregation", cancelled)
                if isinstance(part, tuple):
                    kind, what = part
                    if kind == "malicious":
                        raise MaliciousBehaviourError(what, f"in H{self.index}'s worker triple w{k}")
                    where = f"H{self.index}'s cluster worker w{k}"
                    raise WorkerError(f"{where} failed in the aggregation: {what}")
                self.pids[k] = part.pid
                parts.append(part)
        except BaseException:
            for k, _, _ in calls:
                with contextlib.suppress(Exception):
                    self._actors[k].abort.remote(query_id, "the query failed")
            raise
        return parts

    def peak_rss_bytes(self) -> list[int]:
        """Each worker's peak resident memory so far (bytes)."""
        return [int(v) for v in self._ray.get([a.peak_rss_bytes.remote() for a in self._actors])]

    def _get(
        self, k: int, ref: Any, deadline: float, limit: float, during: str, cancelled: Cancelled | None = None
    ) -> Any:
        """Worker ``k``'s answer; WorkerError if it died, is late past ``deadline``, or the helper stops;
        TransportError if the query ended elsewhere (``cancelled``)."""
        while True:
            try:
                return self._ray.get(ref, timeout=min(max(deadline - time.monotonic(), 0.0), 1.0))
            except self._ray.exceptions.GetTimeoutError:
                if self._closing.is_set():
                    raise WorkerError(f"H{self.index} is shutting down its cluster") from None
                reason = cancelled() if cancelled is not None else None
                if reason is not None:
                    raise TransportError(f"query aborted: {reason}") from None
                if time.monotonic() >= deadline:
                    break
            except self._ray.exceptions.RayError as exc:
                logs.event(
                    self.index, "worker_failed", worker=f"w{k}", pid=self.pids[k], kind=type(exc).__name__
                )
                raise WorkerError(
                    f"H{self.index}'s cluster worker w{k} (ray::{WORKER_NAME}, pid {self.pids[k]}) "
                    f"failed during {during}: {worker_failure(exc)}"
                ) from None
        self._unresponsive(k, limit, during)

    def _unresponsive(self, k: int, limit: float, during: str) -> None:
        """Kill worker ``k`` (Ray starts a fresh one) and fail the call: it did not answer in time."""
        logs.event(self.index, "worker_failed", worker=f"w{k}", pid=self.pids[k], kind="no answer")
        with contextlib.suppress(Exception):
            self._ray.kill(self._actors[k], no_restart=False)
        raise WorkerError(
            f"H{self.index}'s cluster worker w{k} (ray::{WORKER_NAME}, pid {self.pids[k]}) "
            f"did not answer within {limit:.0f} s during {during}: it is restarted"
        )

    def _take_fault(self, k: int, phase: str) -> str:
        """The failpoint for worker ``k`` at this call (tests); logged with the worker's current pid."""
        if k != 0 or not self._fault or phase != self._fault_phase or self._calls[phase] != self._fault_at:
            return ""
        pid = int(self._ray.get(self._actors[k].pid.remote(), timeout=_START_SECONDS))
        logs.event(self.index, "worker_fault", worker=f"w{k}", pid=pid, action=self._fault)
        return self._fault

    def interrupt(self) -> None:
        """Make every call waiting for a worker fail within a second (the helper is stopping)."""
        self._closing.set()

    def shut_down(self) -> None:
        """Kill the actors and leave (a local cluster: stop) the Ray cluster; idempotent."""
        self._closing.set()
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for actor in self._actors:
            with contextlib.suppress(Exception):
                self._ray.kill(actor)
        try:
            self._ray.shutdown()
        finally:
            if self._temp_dir is not None:
                shutil.rmtree(self._temp_dir, ignore_errors=True)
        logs.event(self.index, "cluster_stopped", workers=self.workers)


_FAULT_PHASES = {"worker": "decryption", "worker_aggregate": "aggregation"}


def _worker_fault() -> tuple[str, int, str]:
    """``IPA_FAILPOINT=worker:stop|kill[@N]`` (tests): what worker w0 does at the N-th decryption (1);
    ``worker_aggregate:…`` at the N-th aggregation. (action, N, phase)."""
    point, _, action = os.environ.get("IPA_FAILPOINT", "").partition(":")
    action, _, nth = action.partition("@")
    if point not in _FAULT_PHASES or action not in ("stop", "kill"):
        return "", 0, ""
    return action, int(nth) if nth.isdigit() else 1, _FAULT_PHASES[point]


def _import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "[cluster] workers > 1 needs Ray, which is not installed: pip install 'ipa[cluster]' "
            "(or set workers = 1)"
        ) from None
    return ray


def _probe(address: str) -> None:
    """ConfigError naming ``address`` if nothing listens there (Ray itself would retry for a minute)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"[cluster] address must be host:port of a Ray cluster's GCS, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise ConfigError(
            f"[cluster] address {address}: the Ray cluster cannot be reached ({exc.strerror or exc})"
        ) from None


def _init_local(ray: ModuleType, config: ClusterConfig, index: int) -> str:
    """Start a Ray cluster owned by this process; return its temporary directory.

    Ray gives its raylet a fixed 30 s to register, which a heavily loaded
    machine can miss: a failed start is cleaned up and tried again, at most
    ``_START_ATTEMPTS`` times in all.
    """
    # This cluster's own token, inherited by its processes. One per process, not per attempt:
    # Ray's driver keeps the token it first read, and a retry with another one is refused.
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    for attempt in range(1, _START_ATTEMPTS + 1):
        try:
            return _init_local_once(ray, config, index)
        except Exception as exc:
            if attempt == _START_ATTEMPTS or "timed out" not in str(exc):
                raise
            kind, reason = type(exc).__name__, str(exc)[:300]
            logs.event(index, "cluster_start_retried", attempt=attempt, kind=kind, reason=reason)
    raise AssertionError("unreachable")


def _kill_attempt(temp_dir: str) -> None:
    """SIGKILL the processes of a failed start: those whose command line names its ``temp_dir``.

    The directory is this attempt's own (``mkdtemp``), so its name picks out
    exactly the processes Ray started for it, also those it reparented.
    """
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if temp_dir.encode() in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            continue


def _init_local_once(ray: ModuleType, config: ClusterConfig, index: int) -> str:
    # Short, so Ray's unix socket paths fit; removed at shutdown.
    temp_dir = tempfile.mkdtemp(prefix=f"ipa-ray-h{index}-")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray's nodes take the address given them
    # Ray waits 30 s for its GCS to come up: too short on a loaded machine (seen under a busy test run).
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")
    try:
        ray.init(
            address="local",
            num_cpus=config.workers,
            object_store_memory=config.object_store_bytes,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            _temp_dir=temp_dir,
            log_to_driver=False,
            configure_logging=False,
        )
    except BaseException:
        with contextlib.suppress(Exception):
            ray.shutdown()
        _kill_attempt(temp_dir)  # what ray.shutdown does not know of after a failed start (its GCS, …)
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return temp_dir


def start_cluster(config: HelperConfig) -> Cluster | None:
    """This helper's cluster and workers, or None for ``workers = 1``; ConfigError if it cannot start.

    Call from the main thread (Ray ties a cluster it starts to the thread that
    started it).
    """
    wanted = config.cluster
    if wanted.workers == 1:
        return None
    if threading.current_thread() is not threading.main_thread():
        raise ConfigError("a helper with [cluster] workers > 1 must be started from the main thread")
    ray = _import_ray()
    temp_dir = None
    try:
        if wanted.address:
            _probe(wanted.address)
            ray.init(address=wanted.address, log_to_driver=False, configure_logging=False)
        else:
            temp_dir = _init_local(ray, wanted, config.index)
    except ConfigError:
        raise
    except Exception as exc:
        where = wanted.address or "a local cluster"
        raise ConfigError(f"[cluster] cannot start Ray ({where}): {type(exc).__name__}: {exc}") from None
    try:
        worker = remote_worker(ray, wanted.workers)
        actors = [worker.remote() for _ in range(wanted.workers)]
        pids = [int(p) for p in ray.get([a.pid.remote() for a in actors], timeout=_START_SECONDS)]
    except Exception as exc:
        Cluster(config.index, wanted, ray, [], [], temp_dir).shut_down()
        raise ConfigError(
            f"[cluster] the {wanted.workers} worker actors did not start: {type(exc).__name__}: {exc}"
        ) from None
    logs.event(
        config.index,
        "cluster_started",
        workers=wanted.workers,
        address=wanted.address or "local",
        worker_pids=",".join(map(str, pids)),
    )
    return Cluster(config.index, wanted, ray, actors, pids, temp_dir, config.timeout_seconds)
