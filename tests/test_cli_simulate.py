"""``ipa simulate`` against ``ipa reference`` through the real command line."""

import json

import pytest
from cli_runner import ipa


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "events.csv"
    assert ipa("gen-events", "--events", "2000", "--seed", "11", "--out", str(path)).returncode == 0
    return path


SOURCE_FANOUT = ["--site", "news.example"]
TRIGGER_FANOUT = ["--site", "shop.example", "--query-type", "trigger"]


@pytest.mark.parametrize(
    "extra",
    [
        SOURCE_FANOUT,
        TRIGGER_FANOUT,
        [*SOURCE_FANOUT, "--window", "3600"],
        [*TRIGGER_FANOUT, "--max-events-per-user", "4", "--cap", "5"],
        [*SOURCE_FANOUT, "--plain"],  # shared directly, no match-key encryption
    ],
)
def test_simulate_equals_reference(events, extra):
    query = ["--input", str(events), "--breakdowns", "12", "--cap", "300", *extra]
    reference = json.loads(ipa("reference", *[a for a in query if a != "--plain"]).stdout)
    done = ipa("simulate", *query, "--no-noise")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["sums"] == reference["sums"]
    assert len(result["bytes_sent"]) == 3 and min(result["bytes_sent"]) > 0
    assert result["rounds"] > 0
    assert set(result["seconds"]) >= {"sort", "attribute", "cap", "aggregate", "noise", "total"}


def test_simulate_needs_a_noise_choice(events):
    done = ipa("simulate", "--input", str(events), "--breakdowns", "4", "--cap", "10")
    assert done.returncode == 2
    assert "--epsilon" in done.stderr and "--no-noise" in done.stderr


def test_simulate_with_noise_stays_near_the_reference(events):
    query = ["--input", str(events), "--breakdowns", "4", "--cap", "10", *SOURCE_FANOUT]
    noised = json.loads(ipa("simulate", *query, "--epsilon", "1").stdout)["sums"]
    exact = json.loads(ipa("reference", *query).stdout)["sums"]
    assert all(abs(a - b) < 1000 for a, b in zip(noised, exact, strict=True))  # std ≈ 100 here


def test_a_field_wider_than_its_width_is_named(events):
    done = ipa(
        "simulate",
        "--input",
        str(events),
        "--breakdowns",
        "4",
        "--cap",
        "10",
        "--no-noise",
        *SOURCE_FANOUT,
        "--timestamp-bits",
        "4",
    )
    assert done.returncode == 2
    assert "field timestamp" in done.stderr and "4 bits" in done.stderr


def test_list_steps_prints_every_sending_step_of_each_helper(events):
    query = ["--input", str(events), "--breakdowns", "4", "--cap", "10", *SOURCE_FANOUT]
    done = ipa("simulate", *query, "--epsilon", "1", "--list-steps")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert '"sums"' not in done.stdout  # the step lines only, no result
    assert len(lines) == len(set(lines))
    parsed = [line.split(" ") for line in lines]
    assert all(len(p) in (2, 3) and p[0] in "123" and p[1].startswith("root/") for p in parsed)
    assert [p for p in parsed if len(p) == 3] == [[h, "root/noise", "input"] for h in "123"]
    for phase in ("sort", "last_touch", "cap", "aggregate"):
        assert {p[0] for p in parsed if p[1].startswith(f"root/{phase}/")} == {"1", "2", "3"}
    exact = ipa("simulate", *query, "--no-noise", "--list-steps").stdout.splitlines()
    assert set(lines) - set(exact) == {f"{h} root/noise input" for h in "123"}  # no noise, no noise messages


def test_tamper_needs_a_helper_and_a_step(events):
    query = ["--input", str(events), "--breakdowns", "4", "--cap", "10", *SOURCE_FANOUT, "--no-noise"]
    for bad in ("4:root/sort", "root/sort", "1:", "x:root/sort"):
        done = ipa("simulate", *query, "--tamper", bad)
        assert done.returncode == 2
        assert "--tamper" in done.stderr and "H:STEP" in done.stderr


def test_tamper_at_a_step_where_the_helper_sends_nothing_is_named(events):
    query = ["--input", str(events), "--breakdowns", "4", "--cap", "10", *SOURCE_FANOUT, "--no-noise"]
    done = ipa("simulate", *query, "--plain", "--tamper", "2:root/no_such_step")
    assert done.returncode == 2
    assert "H2 sends nothing at that step" in done.stderr and "--list-steps" in done.stderr
    assert '"sums"' not in done.stdout
