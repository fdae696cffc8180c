"""The privacy budget ledger of one helper: SQLite in its data directory.

The ledger accounts in zCDP ``ρ``, in exact integer units of 10⁻¹² ρ
(:mod:`ipa.dp.accounting`): every (site, epoch) may spend at most
``budget_units``, the network's epoch budget ``(ε_E, δ)`` converted once;
a query is charged the ``ρ`` of its noise, rounded up. Admission compares
integers: no float slack lets a query through a spent budget. A query's
spend moves through three states:

- ``reserved``: debited at admission, atomically with the check that it fits
  (``BEGIN IMMEDIATE``), before any MPC work;
- ``committed``: all three helpers have voted to commit the query (see
  below); moved in the same transaction as the query's outcome;
- ``refunded``: the query was aborted (same transaction as its outcome).

A committed spend is never refunded. Writes are durable before the call
returns (WAL, synchronous FULL), so a ``kill -9`` at any point neither loses
nor double-spends budget. Admission is idempotent per query id.

The same database holds each query's **outcome**, the durable half of the
agreement that ends a query (docs/reliability.md), noised or not:

- ``open``: prepared here; this helper may still abort it on its own;
- ``ready``: this helper's result share is on disk and it has voted to
  commit; from now on it aborts only if a peer has aborted;
- ``committed``: all three voted ready (the spend is committed in the same
  transaction); the result may be released;
- ``aborted``: it failed (the spend is refunded in the same transaction).

At start-up :meth:`recover` aborts every ``open`` query (it died with the
previous process before this helper voted) and keeps ``ready`` ones for the
recovery exchange with the peers.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ipa.errors import ConfigError, IpaError

__all__ = ["ABORTED", "COMMITTED", "OPEN", "READY", "BudgetError", "BudgetLedger", "Ended", "Spend"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    query_id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    epsilon REAL NOT NULL,                 -- the query's own ε at the network's δ (shown, not summed)
    rho INTEGER NOT NULL CHECK (rho >= 0), -- its charge in units of 1e-12 rho (summed)
    state TEXT NOT NULL CHECK (state IN ('reserved', 'committed', 'refunded')),
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_by_site_epoch ON spend (site, epoch);
CREATE TABLE IF NOT EXISTS outcome (
    query_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('open', 'ready', 'committed', 'aborted')),
    token_hash BLOB NOT NULL,
    params BLOB NOT NULL, -- the query's parameters (ipa.v1.QueryParams), for a restarted helper
    updated REAL NOT NULL
);
"""
_SPAN_COLUMN = "ALTER TABLE spend ADD COLUMN last_epoch INTEGER"  # NULL: the query's one epoch
_IN_EPOCH = "site = ? AND epoch <= ? AND COALESCE(last_epoch, epoch) >= ?"  # (site, e, e)

OPEN, READY, COMMITTED, ABORTED = "open", "ready", "committed", "aborted"


class BudgetError(IpaError):
    """A query does not fit the remaining budget, or a ledger operation is not allowed."""


@dataclass(frozen=True)
class Spend:
    query_id: str
    site: str
    epoch: int
    epsilon: float
    state: str
    rho: int = 0  # units of 10⁻¹² ρ


@dataclass(frozen=True)
class Ended:
    """A query whose outcome is decided or voted, as :meth:`BudgetLedger.ended` lists it."""

    query_id: str
    state: str
    token_hash: bytes
    params: bytes  # the query's parameters (ipa_helper.params.spec_to_bytes)
    updated: float  # time.time() of the last change


class BudgetLedger:
    """Thread-safe, durable per-(site, epoch) ledger of ρ in integer units.

    ``describe(units)`` renders an amount for error messages (e.g. as the ε it is worth).
    """

    def __init__(
        self, path: Path, budget_units: int, describe: Callable[[int], str] | None = None
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.budget_units = budget_units
        self._describe = describe or (lambda units: f"{units} units of 1e-12 rho")
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(spend)")}
        if "rho" not in columns:
            self._db.close()
            raise ConfigError(
                f"{path} is an ε ledger of an older ipa version: the ledger now accounts in rho (zCDP); "
                "move the file away to start a new one"
            )
        if "last_epoch" not in columns:
            self._db.execute(_SPAN_COLUMN)  # a ledger written before queries spanned epochs
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self, fn):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    def admit(
        self, query_id: str, site: str, epoch: int, epsilon: float, rho: int, last_epoch: int | None = None
    ) -> None:
        """Reserve ``rho`` units of (site, e) for each epoch e in ``epoch..last_epoch``, or BudgetError.

        ``last_epoch`` defaults to ``epoch``; a query spanning several epochs
        must fit each. ``epsilon`` is the query's own ε, recorded for display
        only. Idempotent.
        """
        last = epoch if last_epoch is None else last_epoch
        if isinstance(rho, bool) or not isinstance(rho, int) or rho < 0:
            raise BudgetError(f"a charge must be a non-negative integer number of units, got {rho!r}")

        def admit(db: sqlite3.Connection) -> None:
            row = db.execute(
                "SELECT site, epoch, rho, state, COALESCE(last_epoch, epoch) FROM spend WHERE query_id = ?",
                (query_id,),
            ).fetchone()
            if row is not None:
                if (*row[:3], row[4]) != (site, epoch, rho, last):
                    raise BudgetError(f"query {query_id} was admitted with other parameters")
                if row[3] != "reserved":
                    raise BudgetError(f"query {query_id} has ended ({row[3]}): it cannot be admitted again")
                return
            for e in range(epoch, last + 1):
                spent = self._spent(db, site, e)
                if spent + rho > self.budget_units:
                    raise BudgetError(
                        f"privacy budget exceeded for site {site!r}, epoch {e}: the query asks for "
                        f"ε = {epsilon:g} ({self._describe(rho)}); what remains allows at most "
                        f"{self._describe(max(self.budget_units - spent, 0))}"
                    )
            db.execute(
                "INSERT INTO spend (query_id, site, epoch, epsilon, rho, state, updated, last_epoch) "
                "VALUES (?, ?, ?, ?, ?, 'reserved', ?, ?)",
                (query_id, site, epoch, epsilon, rho, time.time(), None if last == epoch else last),
            )

        self._transaction(admit)

    def commit(self, query_id: str) -> bool:
        """Make the query's reserved spend final (before this helper says it has finished).

        False (and nothing changes) if it is not reserved: refunded already, or unknown.
        """
        return self._move(query_id, "reserved", "committed")

    def refund(self, query_id: str) -> bool:
        """Give back a reserved spend; False (and nothing changes) if it is committed or unknown."""
        return self._move(query_id, "reserved", "refunded")

    def recover(self) -> list[str]:
        """At start-up: abort every open query and refund every reserved spend not voted ready.

        Those queries died with the last process before this helper voted, so no
        helper can have committed them. Returns the refunded query ids.
        """

        def recover(db: sqlite3.Connection) -> list[str]:
            now = time.time()
            db.execute("UPDATE outcome SET state = 'aborted', updated = ? WHERE state = 'open'", (now,))
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT query_id FROM spend WHERE state = 'reserved' AND query_id NOT IN "
                    "(SELECT query_id FROM outcome WHERE state = 'ready')"
                )
            ]
            db.executemany(
                "UPDATE spend SET state = 'refunded', updated = ? WHERE query_id = ?", [(now, q) for q in ids]
            )
            return ids

        return self._transaction(recover)

    # --- the end of a query: outcome --------------------------------------------------

    def open(self, query_id: str, token_hash: bytes, params: bytes) -> None:
        """Record a prepared query as open; BudgetError if it has ended here already."""

        def open_(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT state FROM outcome WHERE query_id = ?", (query_id,)).fetchone()
            if row is not None and row[0] != OPEN:
                raise BudgetError(f"query {query_id} has ended ({row[0]}): it cannot be prepared again")
            if row is None:
                db.execute(
                    "INSERT INTO outcome VALUES (?, 'open', ?, ?, ?)",
                    (query_id, token_hash, params, time.time()),
                )

        self._transaction(open_)

    def vote(self, query_id: str) -> str:
        """open → ready (this helper's share is on disk); returns the state after the call."""
        return self._set_outcome(query_id, (OPEN,), READY, None)

    def decide(self, query_id: str, commit: bool, learned: bool = False) -> str:
        """Record the decision; returns the state after the call (the first decision stands).

        Commit: ready → committed (spend committed). Abort: open → aborted, or
        ready → aborted only when ``learned`` from a peer that aborted (spend refunded).
        """
        if commit:
            return self._set_outcome(query_id, (READY,), COMMITTED, "committed")
        sources = (OPEN, READY) if learned else (OPEN,)
        return self._set_outcome(query_id, sources, ABORTED, "refunded")

    def outcome(self, query_id: str) -> str | None:
        """The query's outcome here, or None if it was never prepared here."""
        with self._lock:
            row = self._db.execute("SELECT state FROM outcome WHERE query_id = ?", (query_id,)).fetchone()
        return row[0] if row else None

    def ended(self, since: float) -> list[Ended]:
        """Queries voted or decided (not open) whose last change is after ``since`` (time.time())."""
        with self._lock:
            rows = self._db.execute(
                "SELECT query_id, state, token_hash, params, updated FROM outcome "
                "WHERE state != 'open' AND updated >= ? ORDER BY updated",
                (since,),
            ).fetchall()
        return [Ended(q, s, bytes(t), bytes(p), u) for q, s, t, p, u in rows]

    def _set_outcome(self, query_id: str, sources: tuple[str, ...], new: str, spend: str | None) -> str:
        def move(db: sqlite3.Connection) -> str:
            row = db.execute("SELECT state FROM outcome WHERE query_id = ?", (query_id,)).fetchone()
            if row is None:
                return ABORTED  # never prepared here: it cannot be voted or committed
            if row[0] not in sources:
                return row[0]
            now = time.time()
            db.execute("UPDATE outcome SET state = ?, updated = ? WHERE query_id = ?", (new, now, query_id))
            if spend is not None:
                db.execute(
                    "UPDATE spend SET state = ?, updated = ? WHERE query_id = ? AND state = 'reserved'",
                    (spend, now, query_id),
                )
            return new

        return self._transaction(move)

    def spent(self, site: str, epoch: int) -> int:
        """Units spent (reserved or committed) by (site, epoch)."""
        with self._lock:
            return self._spent(self._db, site, epoch)

    def queries(self, site: str, epoch: int) -> list[Spend]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT query_id, site, epoch, epsilon, state, rho FROM spend WHERE {_IN_EPOCH} "
                "ORDER BY updated",
                (site, epoch, epoch),
            ).fetchall()
        return [Spend(*row) for row in rows]

    def _move(self, query_id: str, old: str, new: str) -> bool:
        def move(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE spend SET state = ?, updated = ? WHERE query_id = ? AND state = ?",
                (new, time.time(), query_id, old),
            )
            return cursor.rowcount == 1

        return self._transaction(move)

    @staticmethod
    def _spent(db: sqlite3.Connection, site: str, epoch: int) -> int:
        (total,) = db.execute(
            f"SELECT COALESCE(SUM(rho), 0) FROM spend WHERE {_IN_EPOCH} AND state != 'refunded'",
            (site, epoch, epoch),
        ).fetchone()
        return int(total)
