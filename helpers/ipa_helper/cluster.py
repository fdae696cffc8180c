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
Decoding (:meth:`Cluster.decode`): the coordinator checks the upload's
header and opens its batch key (:func:`ipa.reports.decode.read_head`), cuts
the reports into W slices (:func:`ipa.mpc.collective.slices` of n, the same
cut at every helper) and hands worker k the bytes of the chunks that cover
slice k through Ray's object store, then frees the upload. Each worker
decodes its slice (the fields' AES-GCM, every check, the match keys opened in
its own process; :func:`ipa.reports.decode.decode_part`), finds with its
siblings the reports that duplicate one of another slice
(:func:`ipa.reports.decode.exchange_duplicates`: rows meet on the worker
their hash picks, inside the helper), keeps its decoded rows and returns
one verdict byte per report (valid, off site), the counts of invalid reports
by reason and its number of opens. The helpers agree on the rows from the
verdicts as before, and the coordinator tells each worker which of its rows
to drop (:class:`ipa_helper.held.HeldRows`). The verdicts, and so the rows
kept, are those of W = 1, bit for bit.

The query (:meth:`Cluster.run_query`): worker k's block is the rows it kept
of its slice (the same blocks at every helper, as the helpers keep the same
rows), the coordinators exchange their workers' addresses (one
message per query on their peer channel), and worker k of H1, H2 and H3 run
:func:`ipa.attribution.pipeline.run_query`, distributed, on block k as a
*worker triple* that talks only within itself over mutual TLS
(:mod:`ipa_helper.triples`), with PRSS seeds ``HMAC(seed, "worker/k")``; the
rows it moves within its helper (the sort's routing, the halos of the
boundaries and of last touch, the cap's carry) go actor to actor
(:mod:`ipa_helper.siblings`; its helper's group PRSS is ``HMAC(seed,
"workers")``), never through the coordinator and never to another helper.
Triple 0 adds the helper's noise. In malicious mode each triple verifies its
products before its sums leave the worker, each within 2^-(40 + ⌈log2 W⌉), so
the query is sound to 2^-40. The coordinator adds the W sums (addition of
shares commutes: the same sums as W = 1) and keeps the query's lifecycle, its
ledger and its result; it runs no MPC of the query itself.

Faults
------
A worker that dies during a query (killed, out of memory) fails that query
with :class:`WorkerError`, naming the worker (``w<k>``, its pid); the query
then fails at every helper and its ε is refunded, like any other failure.
Ray restarts the actor (``max_restarts=-1``; the failed call is not retried),
so the helper serves the next query. A worker that does not answer (frozen,
or starved) within ``timeout_seconds`` plus one second per
``MIN_OPENS_PER_SECOND`` reports of the largest slice (decoding; every
worker has the same allowance, as each waits for the others to find
duplicates, and a sibling waits twice as long, so the coordinator names the
late worker first) fails the query likewise, and
is killed so that Ray starts a fresh one: a stuck worker never blocks the
queries after it. A part of a query has ``timeout_seconds`` plus one
second per ``MIN_QUERY_ROWS_PER_SECOND`` rows of its block; the coordinator
waits on the W parts at once, so whichever fails first fails the call; a
query that fails elsewhere meanwhile (a peer aborted it) ends its workers'
parts at once. ``IPA_FAILPOINT=worker:stop`` (or ``worker:kill``; tests
only) makes worker w0 stop (or kill) itself at the start of the first
query's decryption (``worker:stop@N``: of the N-th); ``worker_<phase>:kill@N``
(``worker_sort``, ``worker_attribute``, ``worker_cap``, ``worker_aggregate``,
``worker_noise``) at the start of that phase of its part of the N-th query
on the workers; several, separated by commas.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ipa.attribution.config import QueryConfig
from ipa.attribution.pipeline import PHASES, NoiseHook, QueryResult
from ipa.attribution.rows import SharedRows
from ipa.crypto.binding import Binding
from ipa.crypto.hpke import Suite
from ipa.crypto.keys import KeyRegistry
from ipa.errors import (
    ConfigError,
    InvalidReportError,
    InvalidReportReason,
    IpaError,
    MaliciousBehaviourError,
    TransportError,
)
from ipa.mpc.channel import Peer
from ipa.mpc.collective import GROUP_LABEL, Blocks, slices, worker_label
from ipa.mpc.context import Context
from ipa.query import QuerySpec
from ipa.reports.decode import (
    BatchHead,
    InvalidReportPolicy,
    decode_part,
    exchange_duplicates,
    raise_first_invalid,
    read_head,
)
from ipa.reports.layout import FIELD_RECORD, match_key_record_dtype
from ipa_helper import logs
from ipa_helper.config import ClusterConfig, HelperConfig
from ipa_helper.held import DecodedPart, HeldRows, RemoteBatch
from ipa_helper.siblings import Group, RayCollective, group_mailbox, worker_failure
from ipa_helper.triples import (
    PartResult,
    QueryPart,
    TripleRun,
    TripleServer,
    WorkerIdentity,
    exchange_addresses,
)

__all__ = [
    "WORKER_NAME",
    "Cluster",
    "IpaWorker",
    "WorkerError",
    "remote_worker",
    "start_cluster",
]

WORKER_NAME = "IpaWorker"
"""The actor class's name: its processes show in ``ps`` as ``ray::IpaWorker``."""

_START_SECONDS = 120.0  # for the W actors to be up (they import numpy and cryptography)

_START_ATTEMPTS = 3

MIN_OPENS_PER_SECOND = 500
"""The slowest decoding rate (reports per second) a worker is allowed before it counts as stuck (a
core opens ~10k X25519 match keys per second)."""

MIN_QUERY_ROWS_PER_SECOND = 100
"""The slowest rate at which a worker may run its part of a query (a core runs ~2·10^4 rows/s of
the whole query semi-honest, and malicious mode costs about 20 times that; a loaded machine less)."""

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
        self._held: dict[str, SharedRows] = {}
        """The rows each query decoded here, until its part of the query takes them."""

    def listen(self, identity: WorkerIdentity, k: int) -> tuple[str, int]:
        """Serve worker triple ``k``'s Peer service (started once per process); (its address, pid)."""
        with self._lock:
            if self._triple is None:
                self._triple = TripleServer(identity, k)
            return self._triple.address, os.getpid()

    def query(
        self, part: QueryPart, group: Group, fault: tuple[str, str] = ("", ""), drop: np.ndarray | None = None
    ) -> PartResult | tuple[str, str]:
        """This worker's part of a query with its triple and its siblings (``group``); (kind, what)
        if it failed. A part without rows runs on the rows this worker decoded for the query, but
        ``drop`` (indices within them).

        ``fault`` (tests): (``stop``/``kill``, phase): this process stops or kills itself at the
        start of that phase of its part (:data:`ipa.attribution.pipeline.PHASES`).
        """
        collective = self._collective(part.run.query_id, group, part.run.timeout)
        action, phase = fault
        if action and phase == PHASES[0]:
            _fault(action)

        def on_phase(done: str) -> None:
            if action and PHASES.index(phase) == PHASES.index(done) + 1:
                _fault(action)

        try:
            if part.rows is None:
                part = dataclasses.replace(part, rows=self._take_rows(part.run.query_id, drop))
            result = self._triple_server().run_query(part, os.getpid(), collective, on_phase)
            return dataclasses.replace(result, sibling_bytes_in=collective.received_bytes)
        except MaliciousBehaviourError as exc:
            failed = "malicious", exc.check
        except IpaError as exc:
            failed = "error", str(exc)
        except BaseException:
            self.abort(part.run.query_id, "the worker's part of the query failed")
            raise
        self.abort(part.run.query_id, "the worker's part of the query failed")
        return failed

    def _take_rows(self, query_id: str, drop: np.ndarray | None) -> SharedRows:
        """The rows decoded here for ``query_id`` but ``drop``, which this worker then forgets."""
        with self._lock:
            rows = self._held.pop(query_id, None)
        if rows is None:
            raise IpaError("the worker holds no decoded rows of the query (restarted?)")
        if drop is None or len(drop) == 0:
            return rows
        keep = np.ones(len(rows), dtype=bool)
        keep[drop] = False
        return SharedRows(*(getattr(rows, f)[keep] for f in SharedRows.__dataclass_fields__))

    def decode(
        self,
        query_id: str,
        part: np.ndarray,
        rows: slice,
        head: BatchHead,
        keys: tuple[int, dict[int, Any], int],
        binding: Binding,
        config: QueryConfig,
        group: Group,
        timeout: float,
        fault: str = "",
    ) -> DecodedPart | tuple[str, str]:
        """Decode reports ``rows`` of a batch from ``part`` (the bytes of the chunks that cover them),
        find with the siblings in ``group`` those that duplicate a report of another slice, keep the
        rows for the query and return the verdicts; (kind, what) if it failed.

        ``keys`` is the helper's key registry (helper, keys, current key id).
        """
        if fault:
            _fault(fault)
        collective = self._collective(query_id, group, timeout)
        duplicates = exchange_duplicates(collective, Blocks.even(head.n, group.size))
        try:
            try:
                batch, details = decode_part(
                    part, head, rows, KeyRegistry(*keys), binding, config, duplicates
                )
            except InvalidReportError as exc:  # a chunk that does not open: the batch is refused
                record = match_key_record_dtype(Suite(head.suite))
                duplicates(
                    np.empty(0, record), np.empty(0, FIELD_RECORD), np.empty(0, bool)
                )  # its siblings wait
                return DecodedPart.refused(exc, os.getpid())
        except IpaError as exc:
            self.abort(query_id, "the worker's decoding failed")
            return "error", str(exc)
        except BaseException:
            self.abort(query_id, "the worker's decoding failed")
            raise
        del part
        with self._lock:
            _remember(self._held, query_id, batch.rows, keep=16)
        verdicts = batch.valid.astype(np.uint8) | (batch.rows.off_site.astype(np.uint8) << 1)
        try:
            raise_first_invalid(batch.reasons, details, rows.start)
            first = None
        except InvalidReportError as exc:
            first = (int(exc.reason), exc.index, exc.detail)
        return DecodedPart(
            verdicts, batch.rejected(), batch.distinct_match_keys, first, None, os.getpid(),
            collective.stats.total_bytes, collective.received_bytes,
        )  # fmt: skip

    def forget(self, query_id: str) -> None:
        """Drop the rows decoded here for ``query_id`` (the query ended before its part took them)."""
        with self._lock:
            self._held.pop(query_id, None)

    def _triple_server(self) -> TripleServer:
        if self._triple is None:
            raise IpaError("the worker does not listen for its triple (restarted?)")
        return self._triple

    def abort(self, query_id: str, reason: str) -> None:
        """End this worker's part of ``query_id`` now (it failed elsewhere), and forget its rows."""
        self.forget(query_id)
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


def _fault(action: str) -> None:
    """Stop or kill this process (a failpoint; tests)."""
    os.kill(os.getpid(), signal.SIGSTOP if action == "stop" else signal.SIGKILL)


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
        self._faults = _worker_faults()
        self._calls = {"decryption": 0, "query": 0}
        self.identity: WorkerIdentity | None = None
        """What the workers serve their triples with (set by the server before it serves)."""
        self.keys: KeyRegistry | None = None
        """The helper's HPKE keys, which its workers decode with (set by the server before it serves)."""
        self._triple_bytes: dict[str, int] = {}
        self._layouts: dict[str, _Layout] = {}
        self._restarting: set[int] = set()
        """Workers that failed a call, which Ray is restarting (:meth:`_await_restarted`)."""

    @property
    def workers(self) -> int:
        return len(self._actors)

    def decode(self, query_id: str, cancelled: Cancelled, data: bytearray, spec: QuerySpec) -> RemoteBatch:
        """Decode the upload ``data`` on the workers, which keep the rows (module docstring); the
        verdicts come back. ``data`` is emptied once the workers' parts are in the object store.
        The workers are waited for even if the query ends elsewhere (``cancelled``, unused), within
        their allowance, as one that does not answer is replaced.

        Raises InvalidReportError as :func:`~ipa.reports.decode.decode_batch` would (the first
        invalid report of the batch, with policy FAIL), WorkerError if a worker fails.
        """
        if self.keys is None:
            raise ConfigError("the cluster's workers have no HPKE keys to decode with")
        head = read_head(data, self.keys, spec.binding, last_epoch=spec.last_epoch)
        self._await_restarted()
        pids = self._current_pids()
        self._calls["decryption"] += 1
        cut = slices(head.n, self.workers)
        # The same allowance for every worker: one waits for the others' rows (duplicates).
        limit = self.timeout_seconds + max(s.stop - s.start for s in cut) / MIN_OPENS_PER_SECOND
        keys = (self.keys.helper, dict(self.keys.keys), self.keys.current)
        shared = (self._ray.put(head), self._ray.put(keys), spec.binding, spec.config)
        # The decoding draws no randomness: its group's seeds are never used, and stay here.
        seeds = (secrets.token_bytes(16), secrets.token_bytes(16))
        calls, sent = [], 0
        for k, rows in enumerate(cut):
            first, stop = head.span(rows)
            lo, hi = head.chunk_offset(first), head.chunk_offset(stop)
            part = self._ray.put(np.frombuffer(data, np.uint8, hi - lo, lo))  # a copy: data can go
            sent += hi - lo
            group = Group(self.index - 1, k, tuple(self._actors), pids, seeds)
            action, _ = self._take_fault(k, "decryption")
            # A sibling waits at most twice a worker's allowance: the coordinator names a late one first.
            ref = self._actors[k].decode.remote(query_id, part, rows, *shared, group, 2 * limit, action)
            calls.append((k, limit, ref))
        del part
        data[:] = b""  # the upload: every worker's part is a copy in the object store
        # Not ended early when the query fails elsewhere: a worker that does not answer within its
        # allowance must be found, and replaced, before the next query needs it.
        parts = self._gather(query_id, _running, "decryption", calls)
        self._decoded(cut, sent, parts)
        # A chunk that does not open refuses the batch before any report does, as in one process;
        # the first of them, or of the invalid reports, is the one decoding it whole finds first.
        refused = [p.error for p in parts if p.error is not None]
        if refused:
            raise _invalid(min(refused, key=_index))
        firsts = [p.first for p in parts if p.first is not None]
        if spec.invalid_reports is InvalidReportPolicy.FAIL and firsts:
            raise _invalid(min(firsts, key=_index))
        counts: dict[str, int] = {}
        for p in parts:
            for name, count in p.rejected.items():
                counts[name] = counts.get(name, 0) + count
        return RemoteBatch(np.concatenate([p.verdicts for p in parts]), counts, self.workers)

    def _current_pids(self) -> tuple[int, ...]:
        """Each worker's pid now (a sibling that is restarted while it waits for it is noticed)."""
        started, limit = time.monotonic(), self.timeout_seconds
        asked = [actor.pid.remote() for actor in self._actors]
        self.pids[:] = [
            int(self._get(k, ref, started + limit, limit, "decryption")) for k, ref in enumerate(asked)
        ]
        return tuple(self.pids)

    def _decoded(self, cut: list[slice], sent: int, parts: list[DecodedPart]) -> None:
        """Log what crossed inside this helper for the decoding (``workers_decoded``)."""
        logs.event(
            self.index,
            "workers_decoded",
            rows=",".join(str(r.stop - r.start) for r in cut),
            distinct=sum(p.distinct for p in parts),
            bytes_out=sent,
            bytes_in=sum(p.verdicts.nbytes for p in parts),
            sibling_bytes=",".join(str(p.sibling_bytes) for p in parts),
            sibling_bytes_in=",".join(str(p.sibling_bytes_in) for p in parts),
        )

    def forget(self, query_id: str) -> None:
        """Make the workers drop any rows they still hold for ``query_id`` (it has ended)."""
        for actor in self._actors:
            with contextlib.suppress(Exception):
                actor.forget.remote(query_id)

    @property
    def verifiers(self) -> int:
        """How many verifiers of a malicious query run on the workers: one per triple."""
        return self.workers

    def run_query(
        self, query_id: str, cancelled: Cancelled, ctx: Context, rows: HeldRows, config: QueryConfig,
        noise: NoiseHook,
    ) -> QueryResult:  # fmt: skip
        """Query ``query_id`` on the worker triples (module docstring): worker k runs
        :func:`~ipa.attribution.pipeline.run_query` on the rows it decoded and keeps (``rows``), and
        this helper's result is the sum of its W workers' shares. ``cancelled`` says when the query
        has ended elsewhere: the workers' parts are then ended and the call fails at once. Every
        worker takes part, even with no rows: the rows it will hold after the sort come from the
        others."""
        layout = self._layout(query_id, ctx, cancelled, "query")
        self._calls["query"] += 1
        blocks, seeds = Blocks.of_sizes(rows.sizes), ctx.prss.derived_seeds(GROUP_LABEL)
        cut = [blocks.rows(k) for k in range(self.workers)]
        calls, sent = [], 0
        for k, block in enumerate(cut):
            sent += rows.drop[k].nbytes
            group = Group(ctx.party, k, tuple(self._actors), layout.pids, seeds)
            part = QueryPart(self._triple_run(query_id, ctx, layout, k), None, config, noise)
            fault = self._take_fault(k, "query")
            limit = self.timeout_seconds + (block.stop - block.start) / MIN_QUERY_ROWS_PER_SECOND
            calls.append((k, limit, self._actors[k].query.remote(part, group, fault, rows.drop[k])))
        parts = self._gather(query_id, cancelled, "query", calls)
        results = [p.result for p in parts]
        sums = results[0].sums
        for r in results[1:]:
            sums = sums + r.sums  # shares add (mod 2^64): the shares of the sums of all blocks
        back = sum(r.sums.left.nbytes + r.sums.right.nbytes for r in results)
        self._parts_done(query_id, cut, sent, back, parts)
        seconds = {phase: max(r.seconds[phase] for r in results) for phase in PHASES}
        return QueryResult(sums, seconds, _union_bound(results))

    def _layout(self, query_id: str, ctx: Context, cancelled: Cancelled, phase: str) -> _Layout:
        """Where query ``query_id``'s worker triples meet, found by its first phase on the workers:
        each worker serves its triple (its address and pid), and the coordinators exchange the
        addresses on their own channel (``setup/workers``, once per query)."""
        with self._lock:
            known = self._layouts.get(query_id)
        if known is not None:
            return known
        if self.identity is None:
            raise ConfigError("the cluster's workers have no TLS identity to serve their triples with")
        self._await_restarted()
        started, limit = time.monotonic(), self.timeout_seconds
        listening = [actor.listen.remote(self.identity, k) for k, actor in enumerate(self._actors)]
        answers = [
            self._get(k, ref, started + limit, limit, phase, cancelled) for k, ref in enumerate(listening)
        ]
        self.pids[:] = [int(pid) for _, pid in answers]
        layout = _Layout(
            exchange_addresses(ctx.channel, "setup/workers", [a for a, _ in answers]), tuple(self.pids)
        )
        with self._lock:
            _remember(self._layouts, query_id, layout)
        return layout

    def _triple_run(self, query_id: str, ctx: Context, layout: _Layout, k: int) -> TripleRun:
        bits = None if ctx.verifier is None else ctx.verifier.security_bits
        peers = {p.value: layout.peers[p][k] for p in Peer}
        return TripleRun(query_id, ctx.prss.derived_seeds(worker_label(k)), peers, bits, self.timeout_seconds)

    def _parts_done(
        self, query_id: str, cut: list[slice], sent: int, back: int, parts: list[PartResult]
    ) -> None:
        """Count the triples' MPC bytes for the query, and log what crossed inside this helper."""
        with self._lock:
            _remember(self._triple_bytes, query_id, sum(p.bytes_sent for p in parts))
        soundness = [p.result.log2_soundness for p in parts if p.result.log2_soundness is not None]
        logs.event(
            self.index,
            "workers_queried",
            query_id=query_id,
            rows=",".join(str(r.stop - r.start) for r in cut),
            bytes_out=sent,
            bytes_in=back,
            peer_bytes=",".join(str(p.bytes_sent) for p in parts),
            sibling_bytes=",".join(str(p.sibling_bytes) for p in parts),
            sibling_bytes_in=",".join(str(p.sibling_bytes_in) for p in parts),
            **({"log2_soundness": ",".join(f"{s:.1f}" for s in soundness)} if soundness else {}),
        )

    def triple_bytes(self, query_id: str) -> int:
        """The MPC bytes this helper's workers sent their triples' peers in ``query_id`` (once; 0 if none)."""
        with self._lock:
            self._layouts.pop(query_id, None)
            return self._triple_bytes.pop(query_id, 0)

    def _gather(
        self, query_id: str, cancelled: Cancelled, phase: str, calls: list[tuple[int, float, Any]]
    ) -> list[Any]:
        """Each worker's answer (a PartResult or DecodedPart), in worker order, waiting on all at
        once: the first that fails (dies, reports an error, or is late by its allowance in seconds,
        ``calls``: (worker, allowance, call)) ends every part still running, and the call fails
        naming it."""
        started = time.monotonic()
        pending = {ref: (k, limit) for k, limit, ref in calls}
        done: dict[int, Any] = {}
        try:
            while pending:
                ready = self._ray.wait(list(pending), num_returns=1, timeout=1.0)[0]
                if not ready:
                    self._still_waiting(pending, started, phase, cancelled)
                    continue
                k, limit = pending.pop(ready[0])
                part = self._get(k, ready[0], started + limit, limit, phase)
                if isinstance(part, tuple):
                    self._died(pending, phase)  # a worker that died explains a sibling's failure
                    kind, what = part
                    if kind == "malicious":
                        raise MaliciousBehaviourError(what, f"in H{self.index}'s worker triple w{k}")
                    raise WorkerError(f"H{self.index}'s cluster worker w{k} failed in the {phase}: {what}")
                self.pids[k] = part.pid
                done[k] = part
        except BaseException:
            for k, _, _ in calls:
                with contextlib.suppress(Exception):
                    self._actors[k].abort.remote(query_id, "the query failed")
            raise
        return [done[k] for k, _, _ in calls]

    def _still_waiting(
        self, pending: dict[Any, tuple[int, float]], started: float, phase: str, cancelled: Cancelled
    ) -> None:
        """Fail the wait if the helper stops, the query ended elsewhere, or a worker is late."""
        if self._closing.is_set():
            raise WorkerError(f"H{self.index} is shutting down its cluster")
        reason = cancelled()
        if reason is not None:
            raise TransportError(f"query aborted: {reason}")
        for k, limit in pending.values():
            if time.monotonic() >= started + limit:
                self._unresponsive(k, limit, phase)

    def _died(self, pending: dict[Any, tuple[int, float]], phase: str) -> None:
        """WorkerError naming a worker whose part failed because it died (waiting a second for Ray to say)."""
        if pending:
            for ref in self._ray.wait(list(pending), num_returns=len(pending), timeout=1.0)[0]:
                k, _ = pending[ref]
                self._get(k, ref, time.monotonic() + 1.0, 1.0, phase)  # raises if it died

    def peak_rss_bytes(self) -> list[int]:
        """Each worker's peak resident memory so far (bytes)."""
        return [int(v) for v in self._ray.get([a.peak_rss_bytes.remote() for a in self._actors])]

    def _await_restarted(self) -> None:
        """Wait until every worker that failed a call answers again (its pid), at most
        ``timeout_seconds`` each: Ray refuses calls to an actor it is still restarting
        (``ActorUnavailableError``, not retried), which would fail the query after a fault.
        WorkerError if one does not come back (a frozen one is killed again)."""
        for k in sorted(self._restarting):
            deadline = time.monotonic() + self.timeout_seconds
            while True:
                ref = self._actors[k].pid.remote()
                try:
                    self.pids[k] = int(self._ray.get(ref, timeout=max(deadline - time.monotonic(), 0.0)))
                    break
                except self._ray.exceptions.ActorUnavailableError:
                    if time.monotonic() >= deadline or self._closing.is_set():
                        raise WorkerError(f"H{self.index}'s cluster worker w{k} did not come back") from None
                    time.sleep(0.2)
                except self._ray.exceptions.GetTimeoutError:
                    self._unresponsive(k, self.timeout_seconds, "its restart")
            self._restarting.discard(k)

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
                self._restarting.add(k)
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
        self._restarting.add(k)
        with contextlib.suppress(Exception):
            self._ray.kill(self._actors[k], no_restart=False)
        raise WorkerError(
            f"H{self.index}'s cluster worker w{k} (ray::{WORKER_NAME}, pid {self.pids[k]}) "
            f"did not answer within {limit:.0f} s during {during}: it is restarted"
        )

    def _take_fault(self, k: int, call: str) -> tuple[str, str]:
        """The failpoint for worker ``k`` at this call (``decryption`` or ``query``; tests), as
        (action, phase), logged with the worker's current pid; ("", "") if none."""
        for phase, (action, nth) in self._faults.items():
            if k == 0 and self._calls[call] == nth and (phase in PHASES) == (call == "query"):
                pid = int(self._ray.get(self._actors[k].pid.remote(), timeout=_START_SECONDS))
                logs.event(self.index, "worker_fault", worker=f"w{k}", pid=pid, action=action, phase=phase)
                return action, phase
        return "", ""

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


_FAULT_POINTS = {"worker": "decryption"} | {f"worker_{phase}": phase for phase in PHASES}


def _worker_faults() -> dict[str, tuple[str, int]]:
    """``IPA_FAILPOINT=worker:stop|kill[@N]`` (tests): what worker w0 does at the N-th decryption (1);
    ``worker_<phase>:…`` at the start of that phase (:data:`~ipa.attribution.pipeline.PHASES`) of its
    part of the N-th query on the workers; several points separated by commas. {phase: (action, N)}."""
    faults = {}
    for spec in os.environ.get("IPA_FAILPOINT", "").split(","):
        point, _, action = spec.partition(":")
        action, _, nth = action.partition("@")
        if point in _FAULT_POINTS and action in ("stop", "kill"):
            faults[_FAULT_POINTS[point]] = (action, int(nth) if nth.isdigit() else 1)
    return faults


def _running() -> str | None:
    """A query that has not ended elsewhere (what :meth:`Cluster.decode` waits as)."""
    return None


def _invalid(verdict: tuple[int, int | None, str]) -> InvalidReportError:
    """The InvalidReportError a (reason, index, detail) verdict of a worker stands for."""
    reason, index, detail = verdict
    return InvalidReportError(InvalidReportReason(reason), index, detail)


def _index(verdict: tuple[int, int | None, str]) -> int:
    """The report index of a (reason, index, detail) verdict; a whole batch's (None) first."""
    return -1 if verdict[1] is None else verdict[1]


def _union_bound(results: list[QueryResult]) -> float | None:
    """log2 of the chance that a cheat passes any of the triples' checks: at most the sum of each
    triple's (semi-honest: None)."""
    bounds = [r.log2_soundness for r in results if r.log2_soundness is not None]
    return float(np.logaddexp2.reduce(bounds)) if bounds else None


def _remember(table: dict[str, Any], query_id: str, value: Any, keep: int = 64) -> None:
    """``table[query_id] = value``, keeping the ``keep`` latest queries (one that failed never asks
    again)."""
    table[query_id] = value
    while len(table) > keep:
        del table[next(iter(table))]


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Where a query's worker triples meet: the peer helpers' worker addresses, this helper's pids."""

    peers: dict[Peer, list[str]]
    pids: tuple[int, ...]


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
