"""Golden records of the protocols' communication, kept under review in ``tests/golden/``.

``steps.txt`` is every declared step tree reachable from the query's
(:data:`ipa.attribution.pipeline.QUERY_STEPS`); ``communication.txt`` the
rounds and bytes per row each helper sends in each phase of one query on
fixed synthetic events (they depend only on n and the query's parameters).
A change to a protocol's steps or messages makes this test fail until the
record is regenerated and the difference reviewed with the change:

    IPA_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py
"""

import os
from pathlib import Path

import pytest

from ipa.attribution.config import QueryConfig
from ipa.attribution.pipeline import QUERY_STEPS, run_query
from ipa.attribution.rows import share_events
from ipa.mpc.memory import run_three
from ipa.mpc.step import render
from ipa.synthetic import generate

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("IPA_REGENERATE_GOLDEN") == "1"

HEADER = (
    "# Declared step trees, from ipa.attribution.pipeline.QUERY_STEPS down; one block per tree.\n"
    "# Regenerate: IPA_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py\n\n"
)


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGENERATE:
        path.write_text(text)
    if not path.exists():
        pytest.fail(f"{path} is missing: regenerate it (see this module's docstring)")
    assert text == path.read_text(), f"{path} is out of date: regenerate it and review the difference"


def test_step_trees():
    check("steps.txt", HEADER + render(QUERY_STEPS))


EVENTS = 256
CONFIG = QueryConfig(num_breakdowns=16, cap=100, window=86_400, max_events_per_user=64)


def communication() -> str:
    shares = share_events(generate(EVENTS, seed=1, num_breakdowns=CONFIG.num_breakdowns), CONFIG)
    result = run_three(lambda ctx, rows: run_query(ctx, rows, CONFIG), shares)
    lines = [
        f"# run_query on {EVENTS} synthetic events (seed 1): 16 breakdowns, cap 100, one-day window,",
        "# K = 64, default column widths, source-fanout query.",
        "# Rounds are communication rounds (latency); bytes are sent per row by H1, H2, H3.",
        "# Regenerate: IPA_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py",
        f"{'step':<16}{'rounds':>7}  bytes per row",
    ]
    for step in [*sorted(QUERY_STEPS.children), *sorted(QUERY_STEPS.leaves), None]:
        stats = [s.under(f"root/{step}") if step else s for s in result.stats]
        sent = ", ".join(f"{s.total_bytes / EVENTS:g}" for s in stats)
        lines.append(f"{step or 'total':<16}{max(s.rounds for s in stats):>7}  {sent}")
    return "\n".join(lines) + "\n"


def test_communication():
    check("communication.txt", communication())
