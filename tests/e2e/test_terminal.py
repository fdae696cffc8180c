"""``ipa`` as a person sees it on a terminal (a pseudo-terminal): progress, tables, Ctrl-C.

And, as scripts see it through pipes: JSON on stdout and nothing on stderr.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from terminal import Terminal

from ipa_client.local_network import LocalNetwork

QUERY = ["--breakdowns", "8", "--cap", "100", "--window", "86400"]
HELPER_PHASES = ["helpers decrypt", "sort", "attribute", "cap", "aggregate", "add DP noise", "release"]


def ipa(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ipa_client.cli", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def identity(network) -> Path:
    """The default report collector's identity of the network whose network.toml is ``network``."""
    return Path(network).parent / "collectors" / "default.toml"


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    with LocalNetwork(tmp_path_factory.mktemp("terminal"), timeout_seconds=10) as local:
        yield local.network_file


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    path = tmp_path_factory.mktemp("events") / "events.csv"
    made = ipa("gen-events", "--events", "3000", "--seed", "4", "--out", path, "--breakdowns", "8",
               "--single-site")  # fmt: skip
    assert made.returncode == 0
    return path


def table_rows(text: str) -> dict[int, list[str]]:
    """The rows of a drawn table: {breakdown key: [cell, ...]}."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) > 1 and cells[0].isdigit():
            rows[int(cells[0])] = cells[1:]
    return rows


def test_query_shows_every_phase_then_a_table(network, events, tmp_path):
    reference = json.loads(ipa("reference", "--input", events, *QUERY).stdout)["sums"]
    chart = tmp_path / "query.png"
    term = Terminal("query", "--network", network, "--identity", identity(network), "--input", events, *QUERY,
                    "--site", "s.example", "--epoch", "1", "--no-noise", "--chart", chart)  # fmt: skip
    term.expect(r"user agents encrypt match keys .* [\d,]+/[\d,]+ users", timeout=60)
    assert term.wait(timeout=300) == 0, term.text
    screen = term.text
    for phase in ["building the reports", "uploading to H1, H2, H3", *HELPER_PHASES]:
        assert phase in screen
    assert re.search(r"uploading to H1, H2, H3 .* [\d.]+ [kM]B/[\d.]+ [kM]B", screen)
    assert re.search(r"query · [0-9a-f]{32} · 3,000 events", screen)
    rows = table_rows(screen)
    assert [int(rows[k][0].replace(",", "")) for k in range(8)] == reference
    assert "No noise (a test network): the sums are exact." in screen
    assert "Traceback" not in screen
    assert chart.read_bytes().startswith(b"\x89PNG")


def test_query_through_pipes_is_json_on_stdout_and_nothing_on_stderr(network, events):
    done = ipa("query", "--network", network, "--identity", identity(network), "--input", events, *QUERY,
               "--site", "s.example", "--epoch", "2", "--no-noise")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    result = json.loads(done.stdout)
    assert result["command"] == "query" and result["rows"] == 3000 and len(result["sums"]) == 8
    assert result["epsilon"] is None and result["cap"] == 100


def test_json_flag_on_a_terminal(events):
    term = Terminal("simulate", "--input", events, *QUERY, "--no-noise", "--json")
    assert term.wait(timeout=120) == 0
    result = json.loads(term.text.strip().splitlines()[-1])
    assert result["sums"] == result["true_sums"]


def test_simulate_table_has_the_true_answer_beside(events):
    term = Terminal("simulate", "--input", events, *QUERY, "--epsilon", "1")
    assert term.wait(timeout=120) == 0
    reference = json.loads(ipa("reference", "--input", events, *QUERY).stdout)["sums"]
    rows = table_rows(term.text)
    assert "true answer" in term.text and "released sum" in term.text
    assert [int(rows[k][-1].replace(",", "")) for k in range(8)] == reference
    assert "trigger-value units, at most 100 per user" in term.text


def budget(network, epoch: int) -> dict:
    done = ipa("budget", "--network", network, "--identity", identity(network), "--site", "s.example",
               "--epoch", epoch)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_ctrl_c_cancels_the_query_at_the_helpers_and_refunds_it(network, tmp_path):
    events = tmp_path / "events.csv"
    made = ipa("gen-events", "--events", "40000", "--seed", "5", "--out", events, "--single-site")
    assert made.returncode == 0
    term = Terminal("query", "--network", network, "--identity", identity(network), "--input", events,
                    "--breakdowns", "16", "--cap", "100",
                    "--site", "s.example", "--epoch", "7", "--epsilon", "1")  # fmt: skip
    term.expect("helpers decrypt and check reports", timeout=300)
    term.ctrl_c()
    assert term.wait(timeout=30) == 130
    said = r"ipa: interrupted: query ([0-9a-f]{32}) cancelled at H1, H2, H3 before any release"
    found = re.search(said, term.text)
    assert found, term.text
    assert "Traceback" not in term.text
    spent = budget(network, 7)
    assert spent["spent_by_helper"] == [0.0, 0.0, 0.0]
    assert [(q["query_id"], q["state"]) for q in spent["queries"]] == [(found.group(1), "refunded")]


def test_ctrl_c_before_the_query_exists_spends_nothing_and_a_second_one_exits_at_once(network, tmp_path):
    events = tmp_path / "events.csv"
    made = ipa("gen-events", "--events", "40000", "--seed", "6", "--out", events, "--single-site")
    assert made.returncode == 0
    term = Terminal("query", "--network", network, "--identity", identity(network), "--input", events,
                    "--breakdowns", "16", "--cap", "100",
                    "--site", "s.example", "--epoch", "8", "--epsilon", "1")  # fmt: skip
    term.expect(r"[\d,]+/[\d,]+ users", timeout=60)
    term.ctrl_c()
    term.ctrl_c()
    assert term.wait(timeout=30) == 130
    assert "Traceback" not in term.text
    assert budget(network, 8)["queries"] == []


def test_demo_ctrl_c_stops_cleanly(tmp_path):
    term = Terminal("demo", "--events", "200000")
    term.expect(r"files in (\S+)", timeout=120)
    directory = re.search(r"files in (\S+)", term.text).group(1)
    term.expect(r"[\d,]+/[\d,]+ users", timeout=60)
    term.ctrl_c()
    assert term.wait(timeout=30) == 130
    assert "Traceback" not in term.text
    assert "interrupted before any query was created" in term.text
    running = subprocess.run(["pgrep", "-f", f"ipa_helper.server --config {directory}"], capture_output=True)
    assert running.stdout == b""


def test_simulate_ctrl_c_exits_without_waiting_for_the_three_parties(tmp_path):
    events = tmp_path / "events.csv"
    made = ipa("gen-events", "--events", "60000", "--seed", "7", "--out", events, "--single-site")
    assert made.returncode == 0
    term = Terminal("simulate", "--input", events, "--breakdowns", "16", "--cap", "100", "--no-noise")
    term.expect(r"sort \(by match key, time\)", timeout=120)
    term.ctrl_c()
    assert term.wait(timeout=30) == 130
    assert "ipa: interrupted" in term.text and "Traceback" not in term.text
    assert "released sum" not in term.text
