"""Real helper processes (``python -m ipa_helper.server``) for end-to-end tests."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


class HelperProcess:
    """One ``ipa-helper --config FILE`` child process, logging to a file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ipa_helper.server", "--config", str(self.config)],
                stdout=out,
                stderr=out,
            )
        end = time.monotonic() + timeout
        while b'"listening"' not in self.log.read_bytes().split(b'"stopped"')[-1]:
            if self.process.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"helper did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
