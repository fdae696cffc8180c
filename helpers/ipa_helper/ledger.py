"""The privacy budget ledger of one helper: SQLite in its data directory.

Every (site, epoch) may spend at most ``epoch_budget`` (in ε). A query's
spend moves through three states:

- ``reserved``: debited at admission, atomically with the check that it fits
  (``BEGIN IMMEDIATE``), before any MPC work;
- ``committed``: this helper finished computing its noised result share and
  is about to tell its peers so. Result shares are released only after a
  helper has heard "finished" from both peers, so while any helper's spend is
  still reserved, no result share can have left any helper;
- ``refunded``: the query failed while reserved here.

A committed spend is never refunded. At start-up every reserved spend is
refunded: its query died with the previous process before this helper said
"finished". Writes are durable before the call returns (WAL, synchronous
FULL), so a ``kill -9`` at any point neither loses nor double-spends budget.
Admission is idempotent per query id.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ipa.errors import IpaError

__all__ = ["BudgetError", "BudgetLedger", "Spend"]

_EPS = 1e-9  # float slack when comparing sums of ε

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    query_id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    epsilon REAL NOT NULL CHECK (epsilon > 0),
    state TEXT NOT NULL CHECK (state IN ('reserved', 'committed', 'refunded')),
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_by_site_epoch ON spend (site, epoch);
"""


class BudgetError(IpaError):
    """A query does not fit the remaining budget, or a ledger operation is not allowed."""


@dataclass(frozen=True)
class Spend:
    query_id: str
    site: str
    epoch: int
    epsilon: float
    state: str


class BudgetLedger:
    """Thread-safe, durable per-(site, epoch) ε ledger."""

    def __init__(self, path: Path, epoch_budget: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.epoch_budget = epoch_budget
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
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

    def admit(self, query_id: str, site: str, epoch: int, epsilon: float) -> None:
        """Reserve ``epsilon`` of (site, epoch) for the query, or raise BudgetError. Idempotent."""

        def admit(db: sqlite3.Connection) -> None:
            row = db.execute(
                "SELECT site, epoch, epsilon, state FROM spend WHERE query_id = ?", (query_id,)
            ).fetchone()
            if row is not None:
                if row[:3] != (site, epoch, epsilon):
                    raise BudgetError(f"query {query_id} was admitted with other parameters")
                if row[3] != "reserved":
                    raise BudgetError(f"query {query_id} has ended ({row[3]}): it cannot be admitted again")
                return
            spent = self._spent(db, site, epoch)
            if spent + epsilon > self.epoch_budget + _EPS:
                remaining = max(self.epoch_budget - spent, 0.0)
                raise BudgetError(
                    f"privacy budget exceeded for site {site!r}, epoch {epoch}: "
                    f"the query asks for ε = {epsilon:g}, {remaining:g} of {self.epoch_budget:g} remains"
                )
            db.execute(
                "INSERT INTO spend VALUES (?, ?, ?, ?, 'reserved', ?)",
                (query_id, site, epoch, epsilon, time.time()),
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
        """At start-up: refund every reserved spend (its query died with the last process)."""

        def recover(db: sqlite3.Connection) -> list[str]:
            ids = [r[0] for r in db.execute("SELECT query_id FROM spend WHERE state = 'reserved'")]
            db.execute(
                "UPDATE spend SET state = 'refunded', updated = ? WHERE state = 'reserved'", (time.time(),)
            )
            return ids

        return self._transaction(recover)

    def spent(self, site: str, epoch: int) -> float:
        with self._lock:
            return self._spent(self._db, site, epoch)

    def queries(self, site: str, epoch: int) -> list[Spend]:
        with self._lock:
            rows = self._db.execute(
                "SELECT query_id, site, epoch, epsilon, state FROM spend WHERE site = ? AND epoch = ? "
                "ORDER BY updated",
                (site, epoch),
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
    def _spent(db: sqlite3.Connection, site: str, epoch: int) -> float:
        (total,) = db.execute(
            "SELECT COALESCE(SUM(epsilon), 0) FROM spend "
            "WHERE site = ? AND epoch = ? AND state != 'refunded'",
            (site, epoch),
        ).fetchone()
        return float(total)
