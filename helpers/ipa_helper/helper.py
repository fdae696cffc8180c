"""One helper's query lifecycle, independent of the gRPC plumbing around it.

It talks to the other two helpers only through the peer interface
(:class:`~ipa_helper.peers.PeerLink`: gRPC in ``ipa-helper``, direct calls in
:mod:`ipa_helper.memory` for in-process tests), and takes checked
:class:`~ipa_helper.params.QuerySpec` values, never wire messages.

- The leader (H1) assigns query ids: ``create_query`` checks the parameters,
  then asks both peers to ``prepare``; if either refuses, the query is aborted
  everywhere and refused. Nothing runs before all three have accepted.
- Each helper takes its one upload, whose metadata carries the collector's
  digest of the query's parameters (:func:`ipa.query.params_digest`): a helper
  whose parameters (the leader's forwarded copy, at H2 and H3) do not match it
  fails the query everywhere before reading a byte of the upload. Then it
  decodes its own shares, agrees PRSS seeds with its peers and runs the
  pipeline (which first checks the shares' consistency) in a worker thread.
- A failure anywhere (bad upload, a peer dead or silent past the deadline,
  cancel) fails the query on every helper: the failing helper tells its peers
  (``Peer.Abort``), which wakes their waiting receives. Other queries go on.
- Privacy budget: a noised query is calibrated at the network's δ (a query
  asking for another is refused) and the ρ of its noise is reserved in every
  helper's ledger at prepare time (a refusal anywhere refuses it everywhere).
- The end of a query is an agreement (docs/reliability.md): a helper writes
  its noised result share to disk, votes ``ready`` in its ledger, and tells
  both peers; it commits (spend and outcome, one transaction) once both have
  voted, and only then releases its share. Before its vote a helper may abort
  on its own (refund, then tell the peers); after it, only a peer's abort can
  end the query so. A helper that voted but did not hear both votes asks the
  peers (``outcome``) until one has decided or both have voted; a restarted
  helper aborts what it had not voted for and settles what it had.
- Result shares go only to the caller holding the query's token.
- Security mode (``docs/malicious.md``): a query runs malicious-secure
  (its context has a verifier; every product is verified before any result
  share is stored) unless it asks for ``semi-honest``, which a helper runs
  only if its config has ``allow_semi_honest = true``; a query that names no
  mode runs in the helper's default, malicious unless semi-honest is allowed
  (:func:`security_of`). A failed check (``MaliciousBehaviourError``) fails
  the query here and at the peers, refunded; the helper goes on serving.
"""

from __future__ import annotations

import hmac
import math
import secrets
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import numpy as np

from ipa.attribution.config import QueryConfig
from ipa.attribution.pipeline import PHASES, NoiseHook, QueryResult, no_noise, run_query
from ipa.attribution.rows import SharedRows
from ipa.dp.accounting import query_charge_units
from ipa.dp.release import calibrated_noise
from ipa.errors import InputError, IpaError, MaliciousBehaviourError
from ipa.mpc.buckets import SECURITY_BITS
from ipa.mpc.channel import Channel, Peer
from ipa.mpc.context import Context
from ipa.mpc.prss import agree_seeds
from ipa.mpc.replicated import AShares
from ipa.mpc.verifier import Verifier
from ipa.query import QuerySpec, params_digest
from ipa.reports.decode import DecodedBatch, InvalidReportPolicy, batch_head_length, batch_size
from ipa.reports.layout import BATCH_HEADER
from ipa_helper import logs
from ipa_helper.allocator import release_freed_memory
from ipa_helper.config import HelperConfig
from ipa_helper.decode import Decoder
from ipa_helper.held import HeldRows, RemoteBatch
from ipa_helper.ledger import ABORTED, COMMITTED, READY, BudgetLedger
from ipa_helper.limits import LimitError, check_query, check_upload
from ipa_helper.mailbox import Mailbox
from ipa_helper.params import spec_from_bytes, spec_to_bytes, with_network_delta
from ipa_helper.peers import MessageHook, PeerChannel, PeerLink, RefusedError, UnreachableError
from ipa_helper.queries import TOKEN_HASH_BYTES, QueryRecord, QueryRegistry, State
from ipa_helper.results import ResultStore
from ipa_helper.timers import Deadlines
from ipa_helper.watchdog import Watchdog

__all__ = ["Halted", "Helper", "RefusedError", "UnreachableError", "security_of"]

_STEPS = ("decrypt", *PHASES, "release")
UNKNOWN = "unknown"  # a peer's answer about a query it never prepared


class Halted(BaseException):
    """Raised from a fault point (in-process tests) to end a helper's thread there, with no cleanup."""


def _no_fault(point: str) -> None:
    """Fault injection points (``ipa_helper.server``'s IPA_FAILPOINT; tests): none by default."""


class Distributed(Protocol):
    """A helper's workers (``ipa_helper.cluster.Cluster``), as the query lifecycle uses them."""

    @property
    def workers(self) -> int: ...

    @property
    def verifiers(self) -> int: ...

    def decode(
        self, query_id: str, cancelled: Callable[[], str | None], data: bytearray, spec: QuerySpec
    ) -> RemoteBatch: ...

    def run_query(
        self, query_id: str, cancelled: Callable[[], str | None], ctx: Context, rows: HeldRows,
        config: QueryConfig, noise: NoiseHook,
    ) -> QueryResult: ...  # fmt: skip

    def triple_bytes(self, query_id: str) -> int: ...

    def forget(self, query_id: str) -> None: ...


def _forward_as_is(spec: QuerySpec) -> QuerySpec:
    """What the leader forwards to its peers: the parameters it was given (``IPA_TAMPER`` in tests)."""
    return spec


class Helper:
    """The state and behaviour of one helper process."""

    def __init__(
        self,
        config: HelperConfig,
        peers: dict[Peer, PeerLink],
        decode: Decoder,
        ledger: BudgetLedger,
        mailbox: Mailbox | None = None,
        store: ResultStore | None = None,
        fault: Callable[[str], None] | None = None,
        forward: Callable[[QuerySpec], QuerySpec] | None = None,
        alter: MessageHook | None = None,
        distributed: Distributed | None = None,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.party = config.party
        self.queries = QueryRegistry()
        self.mailbox = mailbox or Mailbox()
        self._peers = peers
        self._decode = decode
        self._workers: set[threading.Thread] = set()
        self._deadlines = Deadlines(f"H{config.index}-deadlines", self._deadline_failed)
        self._admission = threading.Lock()  # the query-count limit and the ledger, checked together
        self._stopping = threading.Event()
        self.store = store or ResultStore(config.data_dir / "results")
        self._fault = fault or _no_fault
        self._forward = forward or _forward_as_is  # tests only: a corrupt leader
        self._alter = alter  # tests only: a helper that alters one MPC message it sends
        self._distributed = distributed  # W > 1 workers: the query runs on worker triples
        # With V verifiers on the workers (one per triple), each gets 2^-(40 + ⌈log2 V⌉), so that
        # together they stay within 2^-40; the coordinator then runs no MPC of the query.
        verifiers = distributed.verifiers if distributed is not None else 1
        self._security_bits = SECURITY_BITS + math.ceil(math.log2(verifiers))

    @property
    def peers(self) -> dict[Peer, PeerLink]:
        """The links to the two neighbours."""
        return self._peers

    def channel(self, query_id: str) -> PeerChannel:
        """The MPC channel of ``query_id`` to the two neighbours."""
        return PeerChannel(
            self.party, query_id, self._peers, self.mailbox, self.config.timeout_seconds, self._alter
        )

    # --- report collector calls -------------------------------------------------

    def create_query(self, spec: QuerySpec, token_hashes: Sequence[bytes]) -> str:
        """Leader only: accept the query here and on both peers, or refuse it everywhere.

        ``token_hashes`` are the SHA-256 of the collector's token for H1, H2, H3.
        """
        if self.party != 0:
            raise InputError("queries are created at the leader, H1")
        if len(token_hashes) != 3 or any(len(h) != TOKEN_HASH_BYTES for h in token_hashes):
            raise InputError("a query needs three 32-byte token hashes, one per helper")
        query_id = secrets.token_hex(16)
        self.prepare(query_id, spec, token_hashes[0])
        forwarded = self._forward(spec)
        for peer in Peer:
            name = f"H{peer.of(self.party) + 1}"
            try:
                self._peers[peer].prepare(query_id, forwarded, token_hashes[peer.of(self.party)])
            except IpaError as exc:  # refused, over a limit, or unreachable: which one is said
                error = _peer_refusal(name, self.config.index, exc)
                self.fail(self.queries.get(query_id), str(error))
                raise error from None
        return query_id

    def prepare(self, query_id: str, spec: QuerySpec, digest: bytes) -> None:
        """Check a query's parameters against this helper's policy and register it.

        The digest of ``spec`` as received (before δ becomes the network's) is
        kept for the upload to match.
        """
        received = params_digest(spec, query_id)
        spec = with_network_delta(spec, self.config.delta)
        if spec.no_noise and not self.config.allow_unnoised:
            raise InputError("this network releases no unnoised results: --no-noise is refused")
        if spec.security == "semi-honest" and not self.config.allow_semi_honest:
            raise InputError(
                "this network runs malicious-secure queries only: a semi-honest query is refused "
                "(allow_semi_honest = true in the helpers' configs allows them)"
            )
        if len(digest) != TOKEN_HASH_BYTES:
            raise InputError("the token hash must be 32 bytes")
        charge = 0 if spec.no_noise else query_charge_units(spec.epsilon, spec.delta, spec.config.cap)
        record = QueryRecord(query_id, spec, digest, params_digest=received)
        forgotten = self.queries.prune(self.config.retention_seconds)
        self.mailbox.forget(forgotten)
        for old in forgotten:
            self.store.delete(old)
        with self._admission:  # limits before budget: a query refused for size spends nothing
            active = len(self.queries.active())
            check_query(spec.config, active, self.config.max_breakdowns, self.config.max_queries)
            if not spec.no_noise:
                where = spec.binding
                self.ledger.admit(query_id, where.site, where.epoch, spec.epsilon, charge, spec.last_epoch)
            self.ledger.open(query_id, digest, spec_to_bytes(spec))
            self.queries.add(record)
        # A collector that never uploads must not hold its ε reserved forever.
        self._deadlines.call_later(self.config.timeout_seconds, self._expire, record)
        logs.event(
            self.config.index,
            "query_prepared",
            query_id=query_id,
            site=spec.binding.site,
            epoch=spec.binding.epoch,
        )

    def upload(
        self,
        query_id: str,
        token: bytes,
        params: bytes,
        chunks: Iterable[bytes],
        interrupt: Callable[[], object] = lambda: None,
    ) -> int:
        """Take this helper's whole upload, then start the query in a worker thread.

        ``params`` is the collector's digest of the query's parameters (from
        the upload's metadata): if the parameters this helper was asked to run
        have another, the query fails everywhere before any chunk is read
        (MaliciousBehaviourError "query parameters"; InputError if it is missing).
        The batch header (in the first chunk) declares the number of reports
        and so the exact length: a batch too large for this helper's limits
        is refused there, and one longer than it declares as soon as it is.
        The upload has deadlines: at most ``upload_idle_seconds`` between chunks
        and ``upload_total_seconds`` in all. Past one, ``interrupt()`` is called
        (it must end the chunk iterator; gRPC: cancel the call) and the query
        fails everywhere, refunded.
        """
        record = self.queries.get(query_id, token)
        self.queries.claim_upload(record)  # atomically: not ended, and the first upload
        self._check_params(record, params)
        watchdog = Watchdog(self.config.upload_idle_seconds, self.config.upload_total_seconds, interrupt)
        try:
            data = self._receive(record, watchdog.watch(chunks))
            if watchdog.expired:  # an interrupted stream may end as if it were complete
                raise InputError(watchdog.expired)
        except BaseException as exc:  # too large, too slow, or the stream broke: the query cannot run
            reason = watchdog.expired or (
                str(exc) if isinstance(exc, IpaError) else "the upload was interrupted"
            )
            self.fail(record, reason)
            if watchdog.expired:
                raise InputError(reason) from None
            raise
        finally:
            watchdog.stop()
        # Atomically: raises if it ended (cancelled, a peer failed) while the upload streamed in.
        self.queries.start(record, phase="decrypt", phase_started=time.perf_counter())
        size = len(data)
        logs.event(self.config.index, "upload_received", query_id=query_id, bytes=size)
        self._fault("uploaded")
        # The worker takes the buffer out of the list, so it is freed once decoded.
        self._spawn(self._run, record, [data])
        return size

    def _check_params(self, record: QueryRecord, params: bytes) -> None:
        """Fail the query everywhere unless ``params`` is the digest of the parameters received for it.

        The error names the check, never a parameter or a digest.
        """
        if hmac.compare_digest(params, record.params_digest):
            return
        error: IpaError
        if not params:
            error = InputError("the upload carries no digest of the query parameters")
        else:
            source = "it was created with" if self.party == 0 else "H1 forwarded"
            error = MaliciousBehaviourError(
                "query parameters",
                f"the query parameters differ from the collector's: those {source} do not match "
                f"the digest in the collector's upload to H{self.config.index}",
            )
        self.fail(record, str(error))
        raise error

    def _receive(self, record: QueryRecord, chunks: Iterable[bytes]) -> bytearray:
        """The upload's bytes, never more than its header declares or this helper's limits allow.

        The buffer grows with what arrives (not with what the header claims),
        so a sender pays in bytes sent for the memory it holds here.
        """
        data, expected, spec = bytearray(), None, record.spec
        for chunk in chunks:
            data += chunk
            if expected is None and len(data) >= BATCH_HEADER.size and len(data) >= batch_head_length(data):
                rows, expected = batch_size(data)
                limits = self.config
                check_upload(
                    spec.config, rows, expected, limits.max_rows, limits.max_upload_bytes,
                    limits.max_query_memory_bytes,
                )  # fmt: skip
            if expected is not None and len(data) > expected:
                raise InputError(f"the upload is longer than the {expected} bytes its header declares")
        return data

    def results(self, query_id: str, token: bytes) -> AShares:
        """This helper's share of a committed query's result (from memory, or from disk after a restart)."""
        record = self.queries.get(query_id, token)
        if record.state is not State.COMPLETED:
            raise InputError(f"query {query_id} has no result: it is {record.state.value}")
        result = record.result if record.result is not None else self.store.get(query_id)
        logs.event(self.config.index, "result_released", query_id=query_id)
        return result

    def cancel(self, query_id: str, token: bytes) -> QueryRecord:
        record = self.queries.get(query_id, token)
        if (
            not self.fail(record, "cancelled by the report collector", State.CANCELLED)
            and not record.state.final
        ):
            raise InputError(f"query {query_id} is releasing its result: it can no longer be cancelled")
        return record

    # --- peer calls ----------------------------------------------------------------

    def receive_message(self, query_id: str, sender: int, step: str, arrays: list[np.ndarray]) -> None:
        """A peer's MPC message: kept for the protocol if this helper knows the query.

        UnknownQueryError if it was never prepared here; TransportError if it is a duplicate.
        """
        self.queries.get(query_id)
        self.mailbox.put(query_id, sender, step, arrays)

    def abort_from_peer(self, query_id: str, sender: int | None, reason: str) -> None:
        """A peer has aborted the query (``sender`` from its certificate; None on an insecure network).

        A peer sends Abort only once the query is durably aborted in its ledger,
        so this helper may abort it even if it has voted ready.
        """
        record = self.queries.get(query_id)
        who = f"H{sender + 1}" if sender is not None else "a peer"
        self.fail(record, f"{who}: {reason}", notify=False, learned=True)

    def outcome(self, query_id: str) -> str:
        """What this helper has durably recorded about the end of ``query_id`` (for the peers)."""
        return self.ledger.outcome(query_id) or UNKNOWN

    # --- running --------------------------------------------------------------------

    def fail(
        self,
        record: QueryRecord,
        reason: str,
        state: State = State.FAILED,
        notify: bool = True,
        learned: bool = False,
    ) -> bool:
        """Abort a query here with ``reason``, wake its receivers, and tell the peers once.

        Durably first: the outcome becomes ``aborted`` (the spend refunded) only
        if it is still open here, or, when ``learned`` from a peer that aborted,
        ready. False, and nothing changes, if this helper has voted ready (only
        the peers' decision can end it then) or the query has ended.
        """
        if self.ledger.decide(record.query_id, commit=False, learned=learned) != ABORTED:
            return False
        self.store.delete(record.query_id)
        if not self.queries.finish(record, state, reason):
            return False
        self.mailbox.abort(record.query_id, reason)
        logs.event(self.config.index, "query_" + state.value, query_id=record.query_id, reason=reason)
        if notify:
            for peer in Peer:
                self._peers[peer].abort(record.query_id, reason)
        return True

    def restore(self) -> None:
        """At start-up (after ``ledger.recover()``): take back the queries of the last process.

        Committed and aborted queries within the retention time are served again
        (results from disk); queries voted ready but undecided are settled with
        the peers in the background.
        """
        horizon = time.time() - self.config.retention_seconds
        keep = set()
        for ended in self.ledger.ended(0.0):
            if ended.state != READY and ended.updated < horizon:
                continue
            age = max(time.time() - ended.updated, 0.0)
            spec = spec_from_bytes(ended.params)
            record = QueryRecord(ended.query_id, spec, ended.token_hash, uploaded=True)
            if ended.state == COMMITTED:
                record.state, record.phase, record.progress = State.COMPLETED, "done", 1.0
                record.ended_at = time.monotonic() - age
            elif ended.state == ABORTED:
                record.state, record.error = State.FAILED, "the query failed (its spend is refunded)"
                record.ended_at = time.monotonic() - age
            else:
                record.state, record.phase = State.RUNNING, "release"
            self.queries.add(record)
            if ended.state != ABORTED:
                keep.add(ended.query_id)
            if ended.state == READY:
                self._spawn(self._settle, record)
        self.store.keep_only(keep)

    def shut_down(self, timeout: float = 10.0) -> None:
        """Fail every query still open here and wait (bounded) for their workers.

        Queries voted ready stay ready: the next start settles them with the peers.
        """
        self._stopping.set()
        for record in self.queries.active():
            self.fail(record, f"H{self.config.index} is shutting down")
        for worker in list(self._workers):
            worker.join(timeout)
        self._deadlines.close()

    def halt(self) -> None:
        """Stop background work without any cleanup (a simulated crash, in-process tests only)."""
        self._stopping.set()
        self._deadlines.close()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        record = args[0]
        assert isinstance(record, QueryRecord)

        def body() -> None:
            try:
                target(*args)
            except Halted:
                pass  # a simulated crash: the thread ends where it is
            finally:
                self._workers.discard(threading.current_thread())
                if not self._workers:
                    release_freed_memory()  # kept for reuse while queries ran (ipa_helper.allocator)

        worker = threading.Thread(target=body, name=f"query-{record.query_id[:8]}", daemon=True)
        self._workers.add(worker)
        worker.start()

    def _deadline_failed(self, exc: Exception) -> None:
        logs.event(self.config.index, "internal_error", kind=type(exc).__name__, where="deadline")

    def _expire(self, record: QueryRecord) -> None:
        if not record.uploaded and not self._stopping.is_set():
            self.fail(record, f"no upload within {self.config.timeout_seconds:g} s")

    def _run(self, record: QueryRecord, upload: list[bytearray]) -> None:
        query_id = record.query_id
        try:
            channel = self._compute_and_vote(record, upload)
        except (IpaError, ValueError) as exc:
            self.fail(record, str(exc))  # no-op if a peer's abort already ended it
            channel = None
        except Exception as exc:  # a bug: fail the query, keep serving, log the type only
            logs.event(
                self.config.index,
                "internal_error",
                query_id=query_id,
                kind=type(exc).__name__,
                where=traceback.extract_tb(exc.__traceback__)[-1].name,
            )
            self.fail(record, f"internal error ({type(exc).__name__})")
            channel = None
        if self._distributed is not None:
            self._distributed.forget(query_id)  # rows its workers decoded and did not query
        if channel is not None:
            self._release(record, channel)
        self.mailbox.abort(query_id, "the query has ended")  # drops late messages too

    def _compute_and_vote(self, record: QueryRecord, upload: list[bytearray]) -> PeerChannel:
        """Decode, run the MPC, store the noised result share durably and vote ready."""
        query_id, spec, data = record.query_id, record.spec, upload.pop()
        channel = self.channel(query_id)
        declared = _declared_rows(data)  # None: the decoder names what is wrong with the batch
        if declared is not None:
            _agree_count(channel, declared)  # before the decoder's memory, not after
        batch = self._decode_upload(record, data)
        del data  # the decoded columns replace it
        keep = _agree_rows(channel, batch.valid, batch.off_site, spec.invalid_reports)
        rows = batch.select(keep)
        self.queries.update(record, rows=len(rows), invalid_reports=batch.rejected())
        del batch, keep  # the rows kept are all the query needs from it
        self._phase_done(record, "decrypt")
        malicious = security_of(spec.security, self.config.allow_semi_honest) == "malicious"
        verifier = Verifier(security_bits=self._security_bits) if malicious else None
        ctx = Context(self.party, channel, agree_seeds(channel), verifier=verifier)
        result = self._run_query(record, ctx, rows, _noise_hook(spec))
        self._fault("computed")
        self.store.put(query_id, result.sums)
        self._fault("stored")
        if self.ledger.vote(query_id) != READY:
            raise IpaError("the query ended before this helper could vote to commit it")
        sent = channel.stats.total_bytes  # and what its workers sent within their triples
        sent += self._distributed.triple_bytes(query_id) if self._distributed is not None else 0
        self.queries.update(record, result=result.sums, bytes_sent=sent, rows=len(rows))
        self._fault("voted")
        return channel

    def _decode_upload(self, record: QueryRecord, data: bytearray) -> DecodedBatch | RemoteBatch:
        """The upload decoded here, or on the workers, which keep the rows (ending their parts if
        the query ends elsewhere)."""
        if self._distributed is None:
            return self._decode(data, record.spec)
        query_id = record.query_id
        cancelled = lambda: self.mailbox.aborted(query_id)  # noqa: E731
        return self._distributed.decode(query_id, cancelled, data, record.spec)

    def _run_query(
        self, record: QueryRecord, ctx: Context, rows: SharedRows | HeldRows, noise: NoiseHook
    ) -> QueryResult:
        """The MPC in this process, or on the worker triples (ending their parts if the query ends
        elsewhere; their phases are logged when they are all done)."""
        config = record.spec.config
        if self._distributed is None:
            assert isinstance(rows, SharedRows)
            return run_query(ctx, rows, config, noise, lambda p: self._phase_done(record, p))
        assert isinstance(rows, HeldRows)
        query_id = record.query_id
        cancelled = lambda: self.mailbox.aborted(query_id)  # noqa: E731
        result = self._distributed.run_query(query_id, cancelled, ctx, rows, config, noise)
        for phase in PHASES:
            self._phase_done(record, phase, result.seconds[phase])
        return result

    def _release(self, record: QueryRecord, channel: PeerChannel) -> None:
        """Exchange votes with both peers: commit if both voted ready, else settle by asking them."""
        try:
            _all_ready(channel, self._fault)
        except IpaError:
            if self.ledger.outcome(record.query_id) == READY:  # not a peer's abort: undecided
                logs.event(self.config.index, "query_undecided", query_id=record.query_id)
                self._settle(record)
            return
        self._conclude(record, COMMITTED, "")

    def _settle(self, record: QueryRecord) -> None:
        """Learn the decision of a query voted ready here by asking the peers until they know.

        Commit if a peer has committed or both have voted ready (then nobody can
        abort); abort if a peer has aborted or never prepared it (then nobody can
        have committed). While a peer is unreachable or still open, ask again.
        """
        while not self._stopping.is_set():
            answers = [self._ask(peer, record.query_id) for peer in Peer]
            if COMMITTED in answers or answers == [READY, READY]:
                self._conclude(record, COMMITTED, "")
                return
            if ABORTED in answers or UNKNOWN in answers:
                self._conclude(record, ABORTED, "a peer aborted the query before it was committed")
                return
            self._stopping.wait(self.config.retry_seconds)

    def _ask(self, peer: Peer, query_id: str) -> str | None:
        try:
            return self._peers[peer].outcome(query_id)
        except IpaError:
            return None  # unreachable: ask again later

    def _conclude(self, record: QueryRecord, decision: str, reason: str) -> None:
        if decision == ABORTED:
            self.fail(record, reason, notify=False, learned=True)
            return
        if self.ledger.decide(record.query_id, commit=True) != COMMITTED:
            return
        self._fault("committed")
        self._phase_done(record, "release")
        if self.queries.finish(record, State.COMPLETED):
            logs.event(
                self.config.index,
                "query_completed",
                query_id=record.query_id,
                rows=record.rows,
                bytes_sent=record.bytes_sent,
            )

    def _phase_done(self, record: QueryRecord, phase: str, seconds: float | None = None) -> None:
        """Log ``phase`` done, taking ``seconds`` (the workers' slowest), else since the last phase."""
        now = time.perf_counter()
        done = _STEPS.index(phase) + 1
        took = now - record.phase_started if seconds is None else seconds
        logs.event(
            self.config.index, "phase_done", query_id=record.query_id, phase=phase, seconds=round(took, 3)
        )
        self.queries.update(
            record,
            phase=_STEPS[done] if done < len(_STEPS) else "done",
            progress=done / len(_STEPS),
            phase_seconds=record.phase_seconds | {phase: took},
            phase_started=now,
        )


def security_of(requested: str, allow_semi_honest: bool) -> str:
    """The mode a query runs in: the one it asked for, or if none (``""``) the helper's default.

    The default is malicious unless the helper allows semi-honest queries (a
    test or benchmark network). The request is among the digested parameters
    (``ipa.query``), so a leader cannot change it on the way.
    """
    if requested:
        return requested
    return "semi-honest" if allow_semi_honest else "malicious"


def _tell_both_peers(channel: Channel, step: str, value: np.ndarray) -> list[np.ndarray]:
    """Send ``value`` to both peers under ``step`` and return theirs (same layout). 1 round."""
    for peer in Peer:
        channel.send(step, peer, [value])
    return [channel.receive(step, peer, [value])[0] for peer in Peer]


def _peer_refusal(name: str, index: int, exc: IpaError) -> IpaError:
    """What the leader says when peer ``name`` did not prepare a query: limit, unreachable or refusal."""
    if isinstance(exc, LimitError):
        return LimitError(f"{name}: {exc}")
    if isinstance(exc, UnreachableError):
        return UnreachableError(f"{name} cannot be reached from H{index}: {exc}")
    return RefusedError(f"{name} refused the query: {exc}")


def _declared_rows(data: bytearray) -> int | None:
    """The number of reports the upload's header declares; None if the header is malformed."""
    try:
        return batch_size(data)[0]
    except IpaError:
        return None


def _agree_count(channel: Channel, declared: int) -> None:
    """Check that every helper's upload declares the same number of reports. 1 round, 8 bytes.

    Done before decoding, so an upload that does not match its peers' costs
    its bytes here and nothing more.
    """
    count = np.array([declared], np.uint64)
    for theirs in _tell_both_peers(channel, "setup/count", count):
        if theirs[0] != count[0]:
            raise InputError(
                f"the helpers received different numbers of reports ({count[0]} and {theirs[0]})"
            )


def _agree_rows(
    channel: Channel, valid: np.ndarray, off_site: np.ndarray, policy: InvalidReportPolicy
) -> np.ndarray:
    """(n,) bool: the rows valid at all three helpers, on whose site all three agree.

    Each sends both peers a byte per report: valid (bit 0) and made off the
    querying site (bit 1, from the report's binding, which each helper
    checked alone). A report seen on different sides by two helpers (a
    collector mixing parts of different match keys) is refused (policy FAIL)
    or dropped by all. The masks say only which reports a helper refused and
    where they were made (public facts about the upload, not about users).
    1 round; n bytes to each peer. A helper with workers learns ``valid`` and
    ``off_site`` from their verdicts (``ipa_helper.held``): the same bytes.
    """
    mine = valid.astype(np.uint8) | (off_site.astype(np.uint8) << 1)
    keep = valid.copy()
    for theirs in _tell_both_peers(channel, "setup/valid", mine):
        keep &= (theirs & 1).astype(bool)
        differ = keep & (((theirs >> 1) & 1).astype(bool) != off_site)
        if differ.any() and policy is InvalidReportPolicy.FAIL:
            first = int(np.flatnonzero(differ)[0])
            raise InputError(f"report {first}: the helpers saw it made on different sites")
        keep &= ~differ
    return keep


def _noise_hook(spec: QuerySpec) -> NoiseHook:
    """Exact sums on a test network; else this helper's discrete Gaussian noise, calibrated."""
    return no_noise if spec.no_noise else calibrated_noise(spec.epsilon, spec.delta, spec.config.cap)


def _all_ready(channel: Channel, fault: Callable[[str], None]) -> None:
    """Tell both peers this helper has voted ready, and wait until both have. 1 round."""
    vote = np.ones(1, np.uint8)
    channel.send("release/finished", Peer.NEXT, [vote])
    fault("told_one")
    channel.send("release/finished", Peer.PREV, [vote])
    fault("told_both")
    for peer in Peer:
        channel.receive("release/finished", peer, [vote])
