"""The budget ledger: atomic admission in exact units, commit/refund rules, durability across processes.

Charges and budgets are integers (units of 10⁻¹² ρ); here the budget is 3000 units.
"""

import sqlite3
import subprocess
import sys
import threading

import pytest

from ipa.errors import ConfigError
from ipa_helper.ledger import BudgetError, BudgetLedger


@pytest.fixture
def ledger(tmp_path):
    book = BudgetLedger(tmp_path / "budget.sqlite", budget_units=3000)
    yield book
    book.close()


def test_admission_stops_at_the_budget_and_names_it(ledger):
    ledger.admit("q1", "s", 1, 1.0, 1000)
    ledger.admit("q2", "s", 1, 2.0, 1999)
    with pytest.raises(BudgetError, match=r"site 's', epoch 1.*ε = 0.5 \(2 units.*at most 1 units"):
        ledger.admit("q3", "s", 1, 0.5, 2)  # one unit over: refused, no slack
    ledger.admit("q3", "s", 1, 0.5, 1)  # exactly what remains: admitted
    with pytest.raises(BudgetError, match="at most 0 units"):
        ledger.admit("q6", "s", 1, 1e-9, 1)
    ledger.admit("q4", "s", 2, 3.0, 3000)  # another epoch has its own budget
    ledger.admit("q5", "t", 1, 3.0, 3000)  # and so has another site
    assert ledger.spent("s", 1) == 3000


def test_admission_is_idempotent_per_query(ledger):
    ledger.admit("q1", "s", 1, 2.0, 2000)
    ledger.admit("q1", "s", 1, 2.0, 2000)
    assert ledger.spent("s", 1) == 2000
    with pytest.raises(BudgetError, match="other parameters"):
        ledger.admit("q1", "s", 1, 1.0, 1000)


def test_refund_only_while_reserved(ledger):
    ledger.admit("q1", "s", 1, 2.0, 2000)
    ledger.admit("q2", "s", 1, 1.0, 1000)
    assert ledger.commit("q2") is True
    assert ledger.refund("q1") is True
    assert ledger.commit("q1") is False  # refunded: it can no longer be committed
    assert ledger.refund("q2") is False  # committed: the spend stands
    assert ledger.refund("q1") is False  # no double refund
    assert ledger.spent("s", 1) == 1000
    assert [(q.query_id, q.state) for q in ledger.queries("s", 1)] == [
        ("q2", "committed"),
        ("q1", "refunded"),
    ]


def test_concurrent_admissions_admit_exactly_what_fits(ledger):
    admitted, refused = [], []

    def ask(i):
        try:
            ledger.admit(f"q{i}", "s", 1, 0.5, 500)
            admitted.append(i)
        except BudgetError:
            refused.append(i)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 6 and len(refused) == 14


def test_reserved_spends_are_refunded_at_restart_and_committed_ones_stand(tmp_path):
    path = tmp_path / "budget.sqlite"
    script = (
        "import os; from pathlib import Path; from ipa_helper.ledger import BudgetLedger; "
        f"b = BudgetLedger(Path({str(path)!r}), 3000); "
        "b.admit('done', 's', 1, 1.0, 1000); b.commit('done'); b.admit('running', 's', 1, 1.5, 1500); "
        "os.kill(os.getpid(), 9)"
    )
    subprocess.run([sys.executable, "-c", script], check=False)
    ledger = BudgetLedger(path, 3000)
    assert ledger.spent("s", 1) == 2500  # kill -9 lost nothing
    assert ledger.recover() == ["running"]
    assert ledger.spent("s", 1) == 1000
    ledger.close()


def test_an_ended_query_cannot_be_admitted_again(ledger):
    ledger.admit("q1", "s", 1, 1.0, 1000)
    ledger.refund("q1")
    with pytest.raises(BudgetError, match="has ended"):
        ledger.admit("q1", "s", 1, 1.0, 1000)


@pytest.mark.parametrize("charge", [-1, 1.5, True])
def test_a_charge_is_a_non_negative_integer(ledger, charge):
    with pytest.raises(BudgetError, match="non-negative integer"):
        ledger.admit("q1", "s", 1, 1.0, charge)


def test_an_old_epsilon_ledger_is_refused_not_misread(tmp_path):
    path = tmp_path / "budget.sqlite"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE spend (query_id TEXT PRIMARY KEY, site TEXT, epoch INTEGER, epsilon REAL, "
        "state TEXT, updated REAL)"
    )
    old.close()
    with pytest.raises(ConfigError, match="older ipa version"):
        BudgetLedger(path, 3000)


def test_a_query_spanning_epochs_is_charged_in_each_and_must_fit_each(ledger):
    ledger.admit("early", "s", 2, 1.0, 2500)
    with pytest.raises(BudgetError, match=r"site 's', epoch 2"):
        ledger.admit("span", "s", 1, 1.0, 1000, last_epoch=3)  # fits epochs 1 and 3, not 2
    ledger.admit("span", "s", 1, 0.5, 500, last_epoch=3)
    ledger.admit("span", "s", 1, 0.5, 500, last_epoch=3)  # idempotent
    assert [ledger.spent("s", e) for e in (0, 1, 2, 3, 4)] == [0, 500, 3000, 500, 0]
    assert [q.query_id for q in ledger.queries("s", 3)] == ["span"]
    with pytest.raises(BudgetError, match="other parameters"):
        ledger.admit("span", "s", 1, 0.5, 500, last_epoch=2)
    assert ledger.refund("span") is True
    assert [ledger.spent("s", e) for e in (1, 2, 3)] == [0, 2500, 0]


def test_the_outcome_of_a_query_moves_only_forward_and_carries_the_spend(tmp_path):
    ledger = BudgetLedger(tmp_path / "b.sqlite", 10_000)
    ledger.admit("q", "s", 1, 2.0, 2000)
    ledger.open("q", bytes(32), b"")
    assert ledger.outcome("q") == "open" and ledger.outcome("nope") is None
    assert ledger.decide("q", commit=True) == "open"  # no commit before this helper's vote
    assert ledger.vote("q") == "ready"
    assert ledger.decide("q", commit=False) == "ready"  # voted: no abort on its own
    assert ledger.decide("q", commit=True) == "committed"
    assert ledger.decide("q", commit=False, learned=True) == "committed"  # decided stays decided
    assert [s.state for s in ledger.queries("s", 1)] == ["committed"]
    with pytest.raises(BudgetError, match="has ended"):
        ledger.open("q", bytes(32), b"")


def test_a_voted_query_aborts_only_when_learned_and_is_refunded(tmp_path):
    ledger = BudgetLedger(tmp_path / "b.sqlite", 10_000)
    ledger.admit("q", "s", 1, 2.0, 2000)
    ledger.open("q", bytes(32), b"")
    ledger.vote("q")
    assert ledger.decide("q", commit=False, learned=True) == "aborted"
    assert ledger.vote("q") == "aborted" and ledger.decide("q", commit=True) == "aborted"
    assert ledger.spent("s", 1) == 0


def test_recovery_aborts_open_queries_and_keeps_voted_ones_reserved(tmp_path):
    ledger = BudgetLedger(tmp_path / "b.sqlite", 10_000)
    for query_id in ("open", "voted"):
        ledger.admit(query_id, "s", 1, 1.0, 1000)
        ledger.open(query_id, bytes(32), b"")
    ledger.vote("voted")
    ledger.admit("no-outcome", "s", 1, 1.0, 1000)  # crashed between admission and open
    assert sorted(ledger.recover()) == ["no-outcome", "open"]
    assert {s.query_id: s.state for s in ledger.queries("s", 1)} == {
        "open": "refunded", "voted": "reserved", "no-outcome": "refunded"
    }
    assert ledger.outcome("open") == "aborted" and ledger.outcome("voted") == "ready"
    assert {e.query_id: e.state for e in ledger.ended(0.0)} == {"open": "aborted", "voted": "ready"}
