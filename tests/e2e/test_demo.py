"""``ipa demo`` end to end, and its clean shutdown on Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time


def demo(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ipa_client.cli", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background jobs ignore SIGINT; a terminal's foreground job does not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def helpers_running(directory: str) -> list[str]:
    found = subprocess.run(
        ["pgrep", "-f", f"ipa_helper.server --config {directory}"], capture_output=True, text=True
    )
    return found.stdout.split()


def test_demo_without_noise_releases_the_true_answer():
    process = demo("--events", "3000", "--seed", "3", "--no-noise")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    result = json.loads(out)  # stdout is a pipe: JSON
    assert result["command"] == "demo" and 0 < result["rows"] < 3000 and result["epsilon"] is None
    assert result["sums"] == result["true_sums"] and len(result["sums"]) == 8
    assert "source-fanout query for news.example" in err
    assert "on shop.example" in err and "on travel.example" in err and "on sport.example" not in err


def test_demo_with_noise_prints_the_noised_result_and_its_scale():
    process = demo("--events", "3000", "--seed", "3", "--epsilon", "2")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    result = json.loads(out)
    assert result["epsilon"] == 2 and len(result["sums"]) == len(result["true_sums"]) == 8


def test_ctrl_c_stops_every_helper_process():
    process = demo("--events", "300000")
    line = process.stderr.readline()  # "three helpers running (TLS on), files in DIR"
    assert "three helpers running" in line, line
    directory = line.rsplit(" ", 1)[-1].strip()
    assert len(helpers_running(directory)) == 3
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    assert process.returncode != 0
    for _ in range(100):
        if not helpers_running(directory):
            break
        time.sleep(0.1)
    assert helpers_running(directory) == []
    assert not os.path.exists(directory)
