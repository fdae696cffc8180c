"""Tests of the ``ipa`` command line, run as a real process (and a few in-process)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_runner import ipa

from ipa.events import COLUMNS, read_csv
from ipa.reference import attribute
from ipa_client.cli import main


def test_gen_events_then_reference(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    made = ipa("gen-events", "--events", "3000", "--seed", "9", "--out", path,
               "--breakdowns", "5", "--constraint-ids", "2")  # fmt: skip
    assert made.returncode == 0, made.stderr
    summary = json.loads(made.stdout)
    assert summary["rows"] == 3000
    assert summary["sources"] + summary["triggers"] == 3000
    assert sum(summary["sites"].values()) == 3000 and len(summary["sites"]) == 5
    events = read_csv(path)
    assert len(events) == 3000
    assert events.breakdown_key.max() < 5
    assert events.constraint_id.max() < 2
    assert events.sites() == sorted(summary["sites"])

    for site, query_type in (("news.example", "source"), ("shop.example", "trigger")):
        done = ipa("reference", "--input", path, "--breakdowns", "5", "--cap", "400", "--window", "86400",
                   "--max-events-per-user", "16", "--site", site, "--query-type", query_type)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        assert done.stdout.count("\n") == 1  # one JSON object on one line
        result = json.loads(done.stdout)
        expected = attribute(events, num_breakdowns=5, cap=400, window=86400, max_events_per_user=16,
                             site=site, query_type=query_type)  # fmt: skip
        assert result == {"command": "reference", "rows": 3000, "sums": expected.tolist()}
        assert sum(result["sums"]) > 0


def test_reference_of_multi_site_events_needs_the_querying_site(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    assert main(["gen-events", "--events", "50", "--seed", "1", "--out", str(path)]) == 0
    done = ipa("reference", "--input", path, "--breakdowns", "4", "--cap", "10")
    assert done.returncode == 2
    assert "give the querying site" in done.stderr


def test_single_site_events_have_no_site_column(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    assert main(["gen-events", "--events", "50", "--seed", "1", "--out", str(path), "--single-site"]) == 0
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)


def test_gen_events_is_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["gen-events", "--events", "500", "--seed", "4", "--out", str(first)]) == 0
    assert main(["gen-events", "--events", "500", "--seed", "4", "--out", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()


def test_reference_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "events.csv"
    path.write_text(",".join(COLUMNS[:-1]) + "\n1,7,0,1,0\n2,7,1,0,50\n")
    assert main(["reference", "--input", str(path), "--breakdowns", "2", "--cap", "30"]) == 0
    assert json.loads(capsys.readouterr().out) == {"command": "reference", "rows": 2, "sums": [0, 30]}


def test_malformed_csv_names_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(",".join(COLUMNS) + "\n1,7,0,1,0,0\n2,7,1,x,50,0\n")
    done = ipa("reference", "--input", path, "--breakdowns", "2", "--cap", "30")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("ipa: error: ")
    assert "line 3, field breakdown_key" in done.stderr
    assert "'x' is not a non-negative integer" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-events-per-user", "6"], "argument --max-events-per-user: must be a power of two"),
        (["--max-events-per-user", str(2**21)], "--max-events-per-user must be at most 2^20"),
        (["--breakdowns", "1000"], "--breakdowns must be at most 256 with --breakdown-bits 8, got 1000"),
        (["--window", str(2**32)], "--window must be in [0, 4294967295]"),
        (["--cap", "-1"], "argument --cap: must be a non-negative integer, got '-1'"),
        (["--breakdowns", "0"], "argument --breakdowns: must be a positive integer, got '0'"),
    ],
)
def test_bad_query_arguments_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(",".join(COLUMNS) + "\n")
    query = {"--breakdowns": "2", "--cap": "10"}
    query.update(zip(args[::2], args[1::2], strict=True))
    argv = ["reference", "--input", str(path), *(x for kv in query.items() for x in kv)]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_missing_input_file_exits_2(tmp_path: Path) -> None:
    done = ipa("reference", "--input", tmp_path / "none.csv", "--breakdowns", "2", "--cap", "1")
    assert done.returncode == 2
    assert done.stderr.startswith("ipa: error: ")
    assert "cannot read" in done.stderr
    assert "Traceback" not in done.stderr


def test_generator_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.csv"
    argv = ["gen-events", "--events", "10", "--seed", "1", "--out", str(out), "--breakdowns", "999"]
    assert main(argv) == 2
    assert "argument --breakdowns: must be an integer in [1, 256], got '999'" in capsys.readouterr().err
    assert not out.exists()


def test_usage_errors_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["reference"]) == 2
    assert "required" in capsys.readouterr().err
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "gen-events" in out
    assert "reference" in out


def test_console_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "ipa"
    if not script.exists():
        pytest.skip("the ipa console script is not installed in this environment")
    path = tmp_path / "events.csv"
    done = subprocess.run([script, "gen-events", "--events", "10", "--seed", "0", "--out", path],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(read_csv(path)) == 10
    assert np.all(read_csv(path).timestamp < 2**20)


def test_version() -> None:
    done = ipa("--version")
    assert done.returncode == 0
    assert re.fullmatch(r"ipa \d+\.\d+\.\d+\S*\n", done.stdout)


def test_help_states_the_limits() -> None:
    for command in ("reference", "simulate", "query"):
        text = " ".join(ipa(command, "--help").stdout.split())
        assert "B ≤ 2^--breakdown-bits (256 by default)" in text, command
        assert "a power of two ≤ 2^20" in text, command
        assert "--value-bits" in text, command


def test_reference_and_simulate_take_the_same_breakdown_limit(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(",".join(COLUMNS) + "\n1,7,0,300,0,0\n2,7,1,0,50,0\n")
    query = ["--input", path, "--cap", "100"]
    for command in (["reference"], ["simulate", "--no-noise"]):
        refused = ipa(*command, *query, "--breakdowns", "1000")
        assert refused.returncode == 2
        assert "--breakdowns must be at most 256 with --breakdown-bits 8" in refused.stderr
        allowed = ipa(*command, *query, "--breakdowns", "1000", "--breakdown-bits", "10")
        assert allowed.returncode == 0, allowed.stderr
        assert json.loads(allowed.stdout)["sums"][300] == 50


def test_dropped_breakdown_keys_are_warned_with_their_count(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    rows = ["1,7,0,1,0,0", "2,7,1,0,50,0", "3,8,0,5,0,0", "4,8,1,0,20,0", "5,9,0,9,0,0", "6,6,0,0,0,0"]
    path.write_text(",".join(COLUMNS) + "\n" + "\n".join(rows) + "\n")
    for command in (["reference"], ["simulate", "--no-noise"]):
        done = ipa(*command, "--input", path, "--breakdowns", "4", "--cap", "100")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["sums"] == [0, 50, 0, 0]
        assert "2 of 4 source events have a breakdown key ≥ --breakdowns 4 (largest 9)" in done.stderr
    quiet = ipa("reference", "--input", path, "--breakdowns", "10", "--cap", "100")
    assert quiet.stderr == ""


@pytest.mark.parametrize(
    ("row", "flags", "message"),
    [
        ("2,7,1,0,70000,0", [], "line 3, field trigger_value: does not fit in 16 bits"),
        ("2,7,1,0,70000,0", [], "raise --value-bits (now 16)"),
        ("99,7,1,0,5,0", ["--timestamp-bits", "4"], "line 3, field timestamp: does not fit in 4 bits"),
        ("2,7,1,0,5,300", [], "raise --constraint-bits (now 8)"),
    ],
)
def test_width_errors_name_the_line_and_the_flag(tmp_path: Path, row: str, flags: list[str], message: str):
    path = tmp_path / "events.csv"
    path.write_text(",".join(COLUMNS) + "\n1,7,0,1,0,0\n" + row + "\n")
    for command in (["reference"], ["simulate", "--no-noise"]):
        done = ipa(*command, "--input", path, "--breakdowns", "2", "--cap", "10", *flags)
        assert done.returncode == 2
        assert done.stderr.startswith(f"ipa: error: {path} line ")
        assert message in done.stderr
        assert "Traceback" not in done.stderr


def test_a_helper_config_is_not_taken_for_a_network_file(tmp_path: Path) -> None:
    assert ipa("keygen", "--out", tmp_path / "net").returncode == 0
    events = tmp_path / "events.csv"
    events.write_text(",".join(COLUMNS) + "\n1,7,0,1,0,0\n")
    for wrong, what in (("helper1.toml", "a helper's config"), ("helper1.hpke.toml", "HPKE key file")):
        done = ipa("query", "--network", tmp_path / "net" / wrong, "--input", events, "--breakdowns", "2",
                   "--cap", "1", "--site", "s", "--epoch", "1", "--no-noise",
                   "--identity", tmp_path / "net" / "collectors" / "default.toml")  # fmt: skip
        assert done.returncode == 2
        assert "is not a network.toml" in done.stderr and what in done.stderr
        assert "pass the network.toml that ipa keygen wrote" in done.stderr


def test_every_user_error_exits_2_without_an_errno(tmp_path: Path) -> None:
    done = ipa("gen-events", "--events", "10", "--seed", "1", "--out", tmp_path / "none" / "x.csv")
    assert done.returncode == 2
    missing = tmp_path / "none"
    assert done.stderr == f"ipa: error: --out {missing / 'x.csv'}: directory {missing} does not exist\n"
    (tmp_path / "dir.csv").mkdir()
    done = ipa("gen-events", "--events", "10", "--seed", "1", "--out", tmp_path / "dir.csv")
    assert done.returncode == 2
    assert done.stderr == f"ipa: error: {tmp_path / 'dir.csv'}: Is a directory\n"


def test_chart_needs_png_or_svg(tmp_path: Path) -> None:
    done = ipa("simulate", "--input", "x.csv", "--breakdowns", "2", "--cap", "1", "--no-noise",
               "--chart", tmp_path / "c.jpg")  # fmt: skip
    assert done.returncode == 2
    assert "argument --chart: must end in .png or .svg, got" in done.stderr


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_chart_is_written(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "events.csv"
    made = ipa("gen-events", "--events", "400", "--seed", "3", "--out", path, "--breakdowns", "4",
               "--single-site")  # fmt: skip
    assert made.returncode == 0
    chart = tmp_path / ("chart" + suffix)
    done = ipa("simulate", "--input", path, "--breakdowns", "4", "--cap", "50", "--epsilon", "1",
               "--chart", chart)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # not a terminal: no progress, no "chart written"
    data = chart.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    else:
        text = data.decode()
        assert "<svg" in text and "breakdown key" in text and "true answer" in text


def test_a_network_file_that_is_missing_or_not_toml_is_named(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text(",".join(COLUMNS) + "\n1,7,0,1,0,0\n")
    assert ipa("keygen", "--out", tmp_path / "net").returncode == 0
    query = ["--input", events, "--breakdowns", "2", "--cap", "1", "--site", "s", "--epoch", "1",
             "--no-noise", "--identity", tmp_path / "net" / "collectors" / "default.toml"]  # fmt: skip
    missing = ipa("query", "--network", tmp_path / "none.toml", *query)
    assert missing.returncode == 2
    assert missing.stderr == f"ipa: error: {tmp_path / 'none.toml'}: cannot read: No such file or directory\n"
    not_toml = ipa("query", "--network", events, *query)
    assert not_toml.returncode == 2
    assert f"{events} is not a network.toml (not valid TOML" in not_toml.stderr
