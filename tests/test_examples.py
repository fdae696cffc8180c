"""Every example in examples/ runs and says what it should."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_simulate_query_matches_the_true_answer():
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "simulate_query.py"), "--events", "3000", "--seed", "5"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    assert "MPC result equals the true answer" in out
    assert "3,000 events" in out


def test_upload_example_produces_uploads_the_helpers_decode():
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "upload.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "4 reports; upload bytes for H1, H2, H3" in out
    assert "sums per breakdown key: [0, 0, 30, 100]" in out
    assert "as expected" in out


def test_malicious_mode_example_verifies_and_catches_a_tamper():
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "malicious_mode.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "x·y = [21, 55, 0] (in Z_2^64)" in out  # 2^40 · 2^30 wraps
    assert "a AND b = [1, 0, 0]" in out
    assert "verified and opened as expected" in out
    assert "H2 altered its product message: malicious behaviour detected" in out
