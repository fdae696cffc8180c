"""One helper's query lifecycle, independent of the gRPC plumbing around it.

It talks to the other two helpers only through the peer interface
(:class:`~ipa_helper.peers.PeerLink`: gRPC in ``ipa-helper``, direct calls in
:mod:`ipa_helper.memory` for in-process tests), and takes checked
:class:`~ipa_helper.params.QuerySpec` values, never wire messages.

- The leader (H1) assigns query ids: ``create_query`` checks the parameters,
  then asks both peers to ``prepare``; if either refuses, the query is aborted
  everywhere and refused. Nothing runs before all three have accepted.
- Each helper takes its one upload, decodes its own shares, agrees PRSS seeds
  with its peers and runs the pipeline in a worker thread.
- A failure anywhere (bad upload, a peer dead or silent past the deadline,
  cancel) fails the query on every helper: the failing helper tells its peers
  (``Peer.Abort``), which wakes their waiting receives. Other queries go on.
- Privacy budget: a noised query is calibrated at the network's δ (a query
  asking for another is refused) and the ρ of its noise is reserved in every
  helper's ledger at prepare time (a refusal anywhere refuses it everywhere). When a helper
  has its noised result share it commits the spend, then tells its peers it
  has finished; its share is released only once both peers have said so. A
  failure refunds the spend only where it is still reserved, which is only
  possible while no share has left any helper (see ``ipa_helper.ledger``).
- Result shares go only to the caller holding the query's token.
"""

from __future__ import annotations

import secrets
import threading
import time
import traceback
from collections.abc import Iterable, Sequence

import numpy as np

from ipa.attribution.pipeline import PHASES, NoiseHook, no_noise, run_query
from ipa.attribution.rows import SharedRows
from ipa.dp.accounting import query_charge_units
from ipa.dp.release import calibrated_noise
from ipa.errors import InputError, IpaError
from ipa.mpc.channel import Channel, Peer
from ipa.mpc.context import Context
from ipa.mpc.prss import agree_seeds
from ipa.mpc.replicated import AShares
from ipa.reports.decode import DecodedBatch, InvalidReportPolicy, batch_head_length, batch_size
from ipa.reports.layout import BATCH_HEADER
from ipa_helper import logs
from ipa_helper.config import HelperConfig
from ipa_helper.decode import Decoder
from ipa_helper.ledger import BudgetLedger
from ipa_helper.limits import LimitError, check_query, check_upload
from ipa_helper.mailbox import Mailbox
from ipa_helper.params import QuerySpec, with_network_delta
from ipa_helper.peers import PeerChannel, PeerLink, RefusedError, UnreachableError
from ipa_helper.queries import TOKEN_HASH_BYTES, QueryRecord, QueryRegistry, State
from ipa_helper.timers import Deadlines

__all__ = ["Helper", "RefusedError", "UnreachableError"]

_STEPS = ("decrypt", *PHASES, "release")


class Helper:
    """The state and behaviour of one helper process."""

    def __init__(
        self,
        config: HelperConfig,
        peers: dict[Peer, PeerLink],
        decode: Decoder,
        ledger: BudgetLedger,
        mailbox: Mailbox | None = None,
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

    @property
    def peers(self) -> dict[Peer, PeerLink]:
        """The links to the two neighbours."""
        return self._peers

    def channel(self, query_id: str) -> PeerChannel:
        """The MPC channel of ``query_id`` to the two neighbours."""
        return PeerChannel(self.party, query_id, self._peers, self.mailbox, self.config.timeout_seconds)

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
        for peer in Peer:
            name = f"H{peer.of(self.party) + 1}"
            try:
                self._peers[peer].prepare(query_id, spec, token_hashes[peer.of(self.party)])
            except IpaError as exc:  # refused, over a limit, or unreachable: which one is said
                error = _peer_refusal(name, self.config.index, exc)
                self.fail(self.queries.get(query_id), str(error))
                raise error from None
        return query_id

    def prepare(self, query_id: str, spec: QuerySpec, digest: bytes) -> None:
        """Check a query's parameters against this helper's policy and register it."""
        spec = with_network_delta(spec, self.config.delta)
        if spec.no_noise and not self.config.allow_unnoised:
            raise InputError("this network releases no unnoised results: --no-noise is refused")
        if len(digest) != TOKEN_HASH_BYTES:
            raise InputError("the token hash must be 32 bytes")
        charge = 0 if spec.no_noise else query_charge_units(spec.epsilon, spec.delta, spec.config.cap)
        record = QueryRecord(query_id, spec, digest)
        self.mailbox.forget(self.queries.prune(self.config.retention_seconds))
        with self._admission:  # limits before budget: a query refused for size spends nothing
            active = len(self.queries.active())
            check_query(spec.config, active, self.config.max_breakdowns, self.config.max_queries)
            if not spec.no_noise:
                where = spec.binding
                self.ledger.admit(query_id, where.site, where.epoch, spec.epsilon, charge, spec.last_epoch)
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

    def upload(self, query_id: str, token: bytes, chunks: Iterable[bytes]) -> int:
        """Take this helper's whole upload, then start the query in a worker thread.

        The batch header (in the first chunk) declares the number of reports
        and so the exact length: a batch too large for this helper's limits
        is refused there, and one longer than it declares as soon as it is.
        """
        record = self.queries.get(query_id, token)
        self.queries.claim_upload(record)  # atomically: not ended, and the first upload
        try:
            data = self._receive(record, chunks)
        except BaseException as exc:  # too large, or the stream broke: the query cannot run
            self.fail(record, str(exc) if isinstance(exc, IpaError) else "the upload was interrupted")
            raise
        # Atomically: raises if it ended (cancelled, a peer failed) while the upload streamed in.
        self.queries.start(record, phase="decrypt", phase_started=time.perf_counter())
        size = len(data)
        logs.event(self.config.index, "upload_received", query_id=query_id, bytes=size)
        # The worker takes the buffer out of the list, so it is freed once decoded.
        worker = threading.Thread(target=self._run, args=(record, [data]), name=f"query-{query_id[:8]}")
        self._workers.add(worker)
        worker.start()
        return size

    def _receive(self, record: QueryRecord, chunks: Iterable[bytes]) -> bytearray:
        """The upload's bytes, never more than its header declares or this helper's limits allow.

        The buffer grows with what arrives (not with what the header claims),
        so a sender pays in bytes sent for the memory it holds here.
        """
        data, expected = bytearray(), None
        for chunk in chunks:
            data += chunk
            if expected is None and len(data) >= BATCH_HEADER.size and len(data) >= batch_head_length(data):
                rows, expected = batch_size(data)
                limits = self.config
                check_upload(
                    record.spec.config, rows, expected, limits.max_rows, limits.max_upload_bytes,
                    limits.max_query_memory_bytes,
                )  # fmt: skip
            if expected is not None and len(data) > expected:
                raise InputError(f"the upload is longer than the {expected} bytes its header declares")
        return data

    def results(self, query_id: str, token: bytes) -> AShares:
        record = self.queries.get(query_id, token)
        if record.state is not State.COMPLETED or record.result is None:
            raise InputError(f"query {query_id} has no result: it is {record.state.value}")
        logs.event(self.config.index, "result_released", query_id=query_id)
        return record.result

    def cancel(self, query_id: str, token: bytes) -> QueryRecord:
        record = self.queries.get(query_id, token)
        self.fail(record, "cancelled by the report collector", State.CANCELLED)
        return record

    # --- peer calls ----------------------------------------------------------------

    def receive_message(self, query_id: str, sender: int, step: str, arrays: list[np.ndarray]) -> None:
        """A peer's MPC message: kept for the protocol if this helper knows the query.

        UnknownQueryError if it was never prepared here; TransportError if it is a duplicate.
        """
        self.queries.get(query_id)
        self.mailbox.put(query_id, sender, step, arrays)

    def abort_from_peer(self, query_id: str, sender: int | None, reason: str) -> None:
        """A peer ended the query (``sender`` from its certificate; None on an insecure network)."""
        record = self.queries.get(query_id)
        who = f"H{sender + 1}" if sender is not None else "a peer"
        self.fail(record, f"{who}: {reason}", notify=False)

    # --- running --------------------------------------------------------------------

    def fail(
        self, record: QueryRecord, reason: str, state: State = State.FAILED, notify: bool = True
    ) -> None:
        """End a query here with ``reason``, wake its receivers, and tell the peers once."""
        if not self.queries.finish(record, state, reason):
            return
        self.ledger.refund(record.query_id)  # only if still reserved here
        self.mailbox.abort(record.query_id, reason)
        logs.event(self.config.index, "query_" + state.value, query_id=record.query_id, reason=reason)
        if notify:
            for peer in Peer:
                self._peers[peer].abort(record.query_id, reason)

    def shut_down(self, timeout: float = 10.0) -> None:
        """Fail every query still running here and wait (bounded) for their workers."""
        for record in self.queries.active():
            self.fail(record, f"H{self.config.index} is shutting down")
        for worker in list(self._workers):
            worker.join(timeout)
        self._deadlines.close()

    def _deadline_failed(self, exc: Exception) -> None:
        logs.event(self.config.index, "internal_error", kind=type(exc).__name__, where="deadline")

    def _expire(self, record: QueryRecord) -> None:
        if not record.uploaded:
            self.fail(record, f"no upload within {self.config.timeout_seconds:g} s")

    def _run(self, record: QueryRecord, upload: list[bytearray]) -> None:
        query_id, data = record.query_id, upload.pop()
        try:
            channel = self.channel(query_id)
            declared = _declared_rows(data)  # None: the decoder names what is wrong with the batch
            if declared is not None:
                _agree_count(channel, declared)  # before the decoder's memory, not after
            batch = self._decode(data, record.spec)
            del data  # the decoded columns replace it
            rows = _agree_rows(channel, batch, record.spec.invalid_reports)
            self.queries.update(record, rows=len(rows), invalid_reports=batch.rejected())
            self._phase_done(record, "decrypt")
            ctx = Context(self.party, channel, agree_seeds(channel))
            noise = _noise_hook(record.spec)
            result = run_query(ctx, rows, record.spec.config, noise, lambda p: self._phase_done(record, p))
            if not record.spec.no_noise and not self.ledger.commit(query_id):
                raise IpaError("the query ended before its budget spend could be committed")
            _all_finished(channel)
            self._phase_done(record, "release")
            self.queries.update(record, result=result.sums, bytes_sent=channel.stats.total_bytes)
            if self.queries.finish(record, State.COMPLETED):
                stats = channel.stats
                logs.event(
                    self.config.index,
                    "query_completed",
                    query_id=query_id,
                    rows=len(rows),
                    bytes_sent=stats.total_bytes,
                    rounds=stats.rounds,
                )
        except (IpaError, ValueError) as exc:
            self.fail(record, str(exc))  # no-op if a peer's abort already ended it
        except Exception as exc:  # a bug: fail the query, keep serving, log the type only
            logs.event(
                self.config.index,
                "internal_error",
                query_id=query_id,
                kind=type(exc).__name__,
                where=traceback.extract_tb(exc.__traceback__)[-1].name,
            )
            self.fail(record, f"internal error ({type(exc).__name__})")
        self.mailbox.abort(query_id, "the query has ended")  # drops late messages too
        self._workers.discard(threading.current_thread())

    def _phase_done(self, record: QueryRecord, phase: str) -> None:
        now = time.perf_counter()
        done = _STEPS.index(phase) + 1
        self.queries.update(
            record,
            phase=_STEPS[done] if done < len(_STEPS) else "done",
            progress=done / len(_STEPS),
            phase_seconds=record.phase_seconds | {phase: now - record.phase_started},
            phase_started=now,
        )


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


def _agree_rows(channel: Channel, batch: DecodedBatch, policy: InvalidReportPolicy) -> SharedRows:
    """The rows valid at all three helpers, on whose site all three agree.

    Each sends both peers a byte per report: valid (bit 0) and made off the
    querying site (bit 1, from the report's binding, which each helper
    checked alone). A report seen on different sides by two helpers (a
    collector mixing parts of different match keys) is refused (policy FAIL)
    or dropped by all. The masks say only which reports a helper refused and
    where they were made (public facts about the upload, not about users).
    1 round; n bytes to each peer.
    """
    off_site = batch.rows.off_site
    mine = batch.valid.astype(np.uint8) | (off_site.astype(np.uint8) << 1)
    keep = batch.valid.copy()
    for theirs in _tell_both_peers(channel, "setup/valid", mine):
        keep &= (theirs & 1).astype(bool)
        differ = keep & (((theirs >> 1) & 1).astype(bool) != off_site)
        if differ.any() and policy is InvalidReportPolicy.FAIL:
            first = int(np.flatnonzero(differ)[0])
            raise InputError(f"report {first}: the helpers saw it made on different sites")
        keep &= ~differ
    return batch.select(keep)


def _noise_hook(spec: QuerySpec) -> NoiseHook:
    """Exact sums on a test network; else this helper's discrete Gaussian noise, calibrated."""
    return no_noise if spec.no_noise else calibrated_noise(spec.epsilon, spec.delta, spec.config.cap)


def _all_finished(channel: Channel) -> None:
    """Tell both peers this helper has its result share, and wait until both have theirs."""
    _tell_both_peers(channel, "release/finished", np.ones(1, np.uint8))
