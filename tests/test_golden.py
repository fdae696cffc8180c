"""Golden records of the protocols' communication, kept under review in ``tests/golden/``.

``steps.txt`` is every declared step tree reachable from the query's
(:data:`ipa.attribution.pipeline.QUERY_STEPS`). A change to a protocol's steps
makes this test fail until the record is regenerated and the difference
reviewed with the change:

    IPA_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py
"""

import os
from pathlib import Path

import pytest

from ipa.attribution.pipeline import QUERY_STEPS
from ipa.mpc.step import render

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
