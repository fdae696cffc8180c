"""The `ipa` command line as the tests run it: a real subprocess, text output captured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def ipa(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ipa_client.cli`` with ``args``; never raises on a non-zero exit (tests read it)."""
    return subprocess.run(
        [sys.executable, "-m", "ipa_client.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
