"""pytest-benchmark suite of the MPC primitives in the in-memory three-party runner.

    .venv/bin/python -m pytest bench --benchmark-enable -m "not slow"

The primitives and their inputs come from ``bench/mpc.py``: the inputs are
shared outside the timing, one ``run_three`` call is timed, and its output is
reconstructed and compared with numpy. Rounds and words sent per row by each
helper go to ``extra_info`` (see ``--benchmark-json``). Shuffle and sort on
10^6 rows are marked ``slow``.
"""

import pytest
from mpc import PRIMITIVES, communication, make_case
from pipeline import measure as measure_pipeline

from ipa.mpc.memory import run_three

ROWS = (10**4, 10**5, 10**6)
SLOW = {"shuffle", "sort"}  # at 10^6 rows


def _params():
    for name in PRIMITIVES:
        for rows in ROWS:
            slow = rows == 10**6 and name in SLOW
            yield pytest.param(name, rows, marks=[pytest.mark.slow] if slow else [], id=f"{name}-{rows}")


@pytest.mark.parametrize(("name", "rows"), list(_params()))
def test_primitive(benchmark, name, rows):
    case = make_case(name, rows)
    result = benchmark.pedantic(
        run_three, args=(case.protocol, case.inputs), rounds=3 if rows < 10**6 else 1, iterations=1
    )
    assert case.check(result.outputs), f"{name} on {rows} rows differs from plaintext"
    benchmark.extra_info.update(rows=rows, **communication(result, rows))


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("events", [10**4, pytest.param(10**5, marks=pytest.mark.slow)])
def test_pipeline(benchmark, events, workers):
    """The whole query, in one process per helper or distributed over two workers per helper."""
    figures = benchmark.pedantic(
        measure_pipeline, args=(events, 1), kwargs={"workers": workers}, rounds=1, iterations=1
    )
    benchmark.extra_info.update(rounds=figures["rounds"], bytes_per_row=figures["bytes_per_row"]["total"])
