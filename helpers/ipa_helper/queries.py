"""The queries a helper knows, their lifecycle, and who may see what of them.

States: AWAITING_UPLOAD → RUNNING → COMPLETED, or FAILED / CANCELLED from any
non-final state. Every operation a collector asks for must present the
query's token; the helper keeps only its SHA-256 and compares in constant time.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import threading
import time
from dataclasses import dataclass, field

from ipa.errors import IpaError
from ipa.mpc.replicated import AShares
from ipa.query import QuerySpec

__all__ = [
    "TOKEN_HASH_BYTES",
    "AccessDeniedError",
    "QueryRecord",
    "QueryRegistry",
    "State",
    "UnknownQueryError",
    "token_hash",
]

TOKEN_HASH_BYTES = 32


class State(enum.Enum):
    AWAITING_UPLOAD = "awaiting_upload"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (State.COMPLETED, State.FAILED, State.CANCELLED)


class UnknownQueryError(IpaError):
    """No query with that id on this helper."""


class AccessDeniedError(IpaError):
    """The caller's token is not the query's."""


def token_hash(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


@dataclass
class QueryRecord:
    """One query on this helper. Mutated only under the registry's lock."""

    query_id: str
    spec: QuerySpec
    token_hash: bytes
    state: State = State.AWAITING_UPLOAD
    phase: str = "awaiting_upload"
    progress: float = 0.0
    error: str = ""
    rows: int = 0
    invalid_reports: dict[str, int] = field(default_factory=dict)
    result: AShares | None = None
    uploaded: bool = False
    phase_seconds: dict[str, float] = field(default_factory=dict)
    phase_started: float = 0.0  # time.perf_counter() when the running phase began
    ended_at: float | None = None  # time.monotonic() when it reached a final state
    bytes_sent: int = 0
    params_digest: bytes = b""  # of the parameters as received (ipa.query.params_digest)


class QueryRegistry:
    """All queries of one helper process, thread-safe."""

    def __init__(self) -> None:
        self._queries: dict[str, QueryRecord] = {}
        self._lock = threading.Lock()

    def add(self, record: QueryRecord) -> None:
        with self._lock:
            if record.query_id in self._queries:
                raise IpaError(f"query {record.query_id} exists already")
            self._queries[record.query_id] = record

    def get(self, query_id: str, token: bytes | None = None) -> QueryRecord:
        """The record; with ``token``, only if it is the query's (AccessDeniedError otherwise)."""
        with self._lock:
            record = self._queries.get(query_id)
        if record is None:
            raise UnknownQueryError(f"unknown query {query_id!r}")
        if token is not None and not hmac.compare_digest(token_hash(token), record.token_hash):
            raise AccessDeniedError(f"not the collector of query {query_id}")
        return record

    def claim_upload(self, record: QueryRecord) -> None:
        """Mark the query's one upload as started; IpaError if it cannot take one now."""
        with self._lock:
            if record.state.final:
                raise IpaError(f"query {record.query_id} has ended ({record.state.value}): {record.error}")
            if record.uploaded:
                raise IpaError(f"query {record.query_id} has its upload already")
            record.uploaded = True

    def start(self, record: QueryRecord, **changes: object) -> None:
        """AWAITING_UPLOAD → RUNNING with ``changes``, in one step; IpaError if it has ended.

        Checking for a final state and switching under the same lock means a
        cancel or a peer's abort either comes first (and the query never runs)
        or finds it RUNNING (and fails it).
        """
        with self._lock:
            if record.state.final:
                raise IpaError(f"query {record.query_id} has ended ({record.state.value}): {record.error}")
            if record.state is not State.AWAITING_UPLOAD:
                raise IpaError(f"query {record.query_id} is {record.state.value} already")
            record.state = State.RUNNING
            for key, value in changes.items():
                setattr(record, key, value)

    def update(self, record: QueryRecord, **changes: object) -> None:
        """Change fields of a record that is not final yet (a final record never changes)."""
        with self._lock:
            if not record.state.final:
                for key, value in changes.items():
                    setattr(record, key, value)

    def finish(self, record: QueryRecord, state: State, error: str = "") -> bool:
        """Move to a final state; False if it was final already (the first outcome stands)."""
        with self._lock:
            if record.state.final:
                return False
            record.state, record.error, record.ended_at = state, error, time.monotonic()
            if state is State.COMPLETED:
                record.progress, record.phase = 1.0, "done"
            return True

    def prune(self, retention: float) -> list[str]:
        """Forget queries that ended more than ``retention`` seconds ago; return their ids."""
        horizon = time.monotonic() - retention
        with self._lock:
            old = [q for q, r in self._queries.items() if r.ended_at is not None and r.ended_at < horizon]
            for query_id in old:
                del self._queries[query_id]
        return old

    def all(self) -> list[QueryRecord]:
        with self._lock:
            return list(self._queries.values())

    def active(self) -> list[QueryRecord]:
        with self._lock:
            return [r for r in self._queries.values() if not r.state.final]
