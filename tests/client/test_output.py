"""The result renderer: one schema, a table whose columns follow what the result states, a chart."""

import json
import subprocess
import sys

import pytest
from rich.console import Console

from ipa_client.chart import write_chart
from ipa_client.output import intervals, notes, render_table

NOISED = {
    "command": "query",
    "query_id": "ab" * 16,
    "sums": [26234, -1200, 5000],
    "noise": {"mechanism": "discrete Gaussian", "std": 1500.0, "ci95": 2940.0},
    "epsilon": 1.0,
    "cap": 100,
}


def drawn(result: dict) -> str:
    console = Console(width=120, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(render_table(result))
    return console.export_text()


def test_interval_column_only_when_the_result_states_its_noise():
    text = drawn(NOISED)
    assert "95% interval" in text
    assert "23,294 … 29,174" in text and "-4,140 … 1,740" in text
    assert "true answer" not in text
    bare = {k: v for k, v in NOISED.items() if k != "noise"}
    assert "95% interval" not in drawn(bare)


def test_per_sum_noise_and_the_true_answer():
    result = NOISED | {"noise": {"mechanism": "m", "std": [1, 2, 3], "ci95": [10, 20, 30]}}
    result["true_sums"] = [26000, 0, 5100]
    assert intervals(result) == [10.0, 20.0, 30.0]
    text = drawn(result)
    assert "26,224 … 26,244" in text and "-1,220 … -1,180" in text and "4,970 … 5,030" in text
    assert "true answer" in text and "26,000" in text


def test_noise_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="noise has 2 values for 3 sums"):
        intervals(NOISED | {"noise": {"mechanism": "m", "std": [1, 2], "ci95": [1, 2]}})


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_chart_with_intervals_and_true_answer(tmp_path, suffix):
    path = tmp_path / ("c" + suffix)
    write_chart(path, NOISED | {"true_sums": [26000, 0, 5100]}, "title")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") if suffix == ".png" else b"95% interval" in data


def test_notes_say_units_negative_sums_and_noise():
    said = " ".join(notes(NOISED))
    assert "trigger-value units, at most 100 per user" in said
    assert "discrete Gaussian noise (std 1,500)" in said and "19 times in 20" in said
    assert "negative sum" in said
    exact = {"command": "query", "sums": [1, 2], "epsilon": None}
    assert notes(exact)[-1] == "No noise (a test network): the sums are exact."
    assert not any("negative" in n or "interval" in n for n in notes(exact))


def test_emit_prints_the_result_as_json_when_stdout_is_not_a_terminal():
    script = f"""
import argparse
from ipa_client.output import emit
emit({NOISED!r}, argparse.Namespace(json=False))
"""
    # A terminal-less run prints JSON: the same object, whole.
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == NOISED
