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

The MPC phases after decryption still run in the coordinator
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
queries after it. ``IPA_FAILPOINT=worker:stop`` (or
``worker:kill``; tests only) makes worker w0 stop (or kill) itself at the
start of the first query's decryption (``worker:stop@N``: of the N-th).
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
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ipa.crypto.hpke import PrivateKey
from ipa.crypto.opener import open_many, row_hash
from ipa.errors import ConfigError, IpaError
from ipa_helper import logs
from ipa_helper.config import ClusterConfig, HelperConfig

__all__ = ["WORKER_NAME", "Cluster", "IpaWorker", "WorkerError", "start_cluster"]

WORKER_NAME = "IpaWorker"
"""The actor class's name: its processes show in ``ps`` as ``ray::IpaWorker``."""

_START_SECONDS = 120.0  # for the W actors to be up (they import numpy and cryptography)

_START_ATTEMPTS = 3

MIN_OPENS_PER_SECOND = 500
"""The slowest opening rate a worker is allowed before it counts as stuck (a core opens ~10k X25519/s)."""


class WorkerError(IpaError):
    """A worker actor died or failed during a query: the query fails (and is refunded)."""


class IpaWorker:
    """One worker actor of a helper. It keeps nothing between calls."""

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
        self._fault, self._fault_at = _worker_fault()
        self._calls = 0

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
        self._calls += 1
        calls = []
        for k, actor in enumerate(self._actors):
            rows = order[bounds[k] : bounds[k + 1]]
            if len(rows):
                fault = self._take_fault(k)
                ref = actor.open.remote(*shared, key_ids[rows], sealed[rows], plaintext_length, fault)
                calls.append((k, rows, ref))
        distinct = 0
        sent = key_ids.nbytes + sealed.nbytes  # the rows' columns, each to one worker
        received = 0
        started = time.monotonic()
        for k, rows, ref in calls:
            limit = self.timeout_seconds + len(rows) / MIN_OPENS_PER_SECOND
            opened, good, count, pid = self._get(k, ref, started + limit, limit)
            plain[rows], ok[rows] = opened, good
            distinct += count
            received += opened.nbytes + good.nbytes
            self.pids[k] = pid
        per_worker = ",".join(str(int(bounds[k + 1] - bounds[k])) for k in range(self.workers))
        moved = {"bytes_out": sent, "bytes_in": received}
        logs.event(self.index, "workers_opened", rows=per_worker, distinct=distinct, **moved)
        return plain, ok, distinct

    def peak_rss_bytes(self) -> list[int]:
        """Each worker's peak resident memory so far (bytes)."""
        return [int(v) for v in self._ray.get([a.peak_rss_bytes.remote() for a in self._actors])]

    def _get(self, k: int, ref: Any, deadline: float, limit: float) -> Any:
        """Worker ``k``'s answer; WorkerError if it died, is late past ``deadline``, or the helper stops."""
        while True:
            try:
                return self._ray.get(ref, timeout=min(max(deadline - time.monotonic(), 0.0), 1.0))
            except self._ray.exceptions.GetTimeoutError:
                if self._closing.is_set():
                    raise WorkerError(f"H{self.index} is shutting down its cluster") from None
                if time.monotonic() >= deadline:
                    break
            except self._ray.exceptions.RayError as exc:
                logs.event(
                    self.index, "worker_failed", worker=f"w{k}", pid=self.pids[k], kind=type(exc).__name__
                )
                raise WorkerError(
                    f"H{self.index}'s cluster worker w{k} (ray::{WORKER_NAME}, pid {self.pids[k]}) "
                    f"failed during decryption: {_reason(exc)}"
                ) from None
        self._unresponsive(k, limit)

    def _unresponsive(self, k: int, limit: float) -> None:
        """Kill worker ``k`` (Ray starts a fresh one) and fail the call: it did not answer in time."""
        logs.event(self.index, "worker_failed", worker=f"w{k}", pid=self.pids[k], kind="no answer")
        with contextlib.suppress(Exception):
            self._ray.kill(self._actors[k], no_restart=False)
        raise WorkerError(
            f"H{self.index}'s cluster worker w{k} (ray::{WORKER_NAME}, pid {self.pids[k]}) "
            f"did not answer within {limit:.0f} s during decryption: it is restarted"
        )

    def _take_fault(self, k: int) -> str:
        """The failpoint for worker ``k`` at this call (tests); logged with the worker's current pid."""
        if k != 0 or not self._fault or self._calls != self._fault_at:
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


def _reason(exc: Exception) -> str:
    name = type(exc).__name__
    if "Died" in name or "ActorError" in name or "Unavailable" in name:
        return "the worker process died"
    return name


def _worker_fault() -> tuple[str, int]:
    """``IPA_FAILPOINT=worker:stop|kill[@N]`` (tests): what worker w0 does at the N-th decryption (1)."""
    point, _, action = os.environ.get("IPA_FAILPOINT", "").partition(":")
    action, _, nth = action.partition("@")
    if point != "worker" or action not in ("stop", "kill"):
        return "", 0
    return action, int(nth) if nth.isdigit() else 1


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
        worker = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=0)(IpaWorker)
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
