"""``ipa simulate --security malicious``: equal to the reference, its step list, and ``--tamper`` aborting."""

import json

import pytest
from cli_runner import ipa

EXIT_MALICIOUS = 3


@pytest.fixture(scope="module")
def query(tmp_path_factory):
    path = tmp_path_factory.mktemp("mal") / "events.csv"
    assert ipa("gen-events", "--events", "120", "--seed", "7", "--out", str(path)).returncode == 0
    return ["--input", str(path), "--breakdowns", "16", "--cap", "50", "--site", "news.example", "--plain"]


@pytest.fixture(scope="module")
def steps(query):
    done = ipa("simulate", *query, "--epsilon", "1", "--security", "malicious", "--list-steps")
    assert done.returncode == 0, done.stderr
    return [line.split(" ") for line in done.stdout.splitlines()]


def test_malicious_simulate_equals_the_reference(query):
    reference = json.loads(ipa("reference", *[a for a in query if a != "--plain"]).stdout)
    done = ipa("simulate", *query, "--no-noise", "--security", "malicious", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sums"] == reference["sums"]


def test_list_steps_in_malicious_mode_has_the_checkpoints_and_only_the_noise_as_input(steps):
    assert all(p[0] in "123" for p in steps)
    assert [p for p in steps if len(p) == 3] == [[h, "root/noise", "input"] for h in "123"]
    for checkpoint in ("root/verify_release_0/zero", "root/verify_cap_0/open"):
        assert {p[0] for p in steps if p[1] == checkpoint} == {"1", "2", "3"}


@pytest.mark.parametrize("which", [0, 1, -1])  # the first sort step, one more, the very last step
def test_tamper_aborts_with_status_3_and_prints_no_sums(query, steps, which):
    checked = sorted(p for p in steps if len(p) == 2)
    helper, step = checked[which]
    done = ipa(
        "simulate", *query, "--epsilon", "1", "--security", "malicious", "--tamper", f"{helper}:{step}"
    )
    assert done.returncode == EXIT_MALICIOUS, done.stderr
    assert "malicious" in done.stderr
    assert done.stdout == ""  # no sums, no table


def test_the_same_tamper_goes_unnoticed_in_semi_honest_mode(query, steps):
    helper, step = next(p for p in steps if len(p) == 2 and p[1].startswith("root/aggregate"))
    done = ipa("simulate", *query, "--no-noise", "--json", "--tamper", f"{helper}:{step}")
    assert done.returncode == 0, done.stderr  # the point of malicious mode
