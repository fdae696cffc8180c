"""For the Ray cluster tests: three helper processes with two Ray workers each, and what to read of them.

Each test module of the cluster tests starts at most one such network at a
time (a module's fixture ends before the next module starts), so the 2-core
machine never holds more than three local Ray clusters for them.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ipa.attribution.config import QueryConfig
from ipa_client.local_network import LocalNetwork, descendants
from ipa_helper.cluster import WORKER_NAME

WORKERS = 2
CONFIG = QueryConfig(num_breakdowns=4, cap=20, timestamp_bits=20)


def ipa(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ipa_client.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def log_events(log: Path, name: str) -> list[dict]:
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    return [e for e in map(json.loads, lines) if e.get("event") == name]


def wait_for_event(log: Path, name: str, count: int = 1, deadline: float = 120.0, context: str = "") -> dict:
    """The ``count``-th event ``name`` of a helper's log, once it is there (``context``: what the
    failure message adds)."""
    end = time.monotonic() + deadline
    while len(found := log_events(log, name)) < count:
        missing = f"no {count}th {name!r} event in {log.name} within {deadline:.0f} s{context}"
        assert time.monotonic() < end, missing
        time.sleep(0.1)
    return found[count - 1]


def workers_of(pid: int) -> list[int]:
    """The Ray worker actors below helper process ``pid`` (``ray::IpaWorker``, ``ray::IpaWorker.open()``)."""
    return [p for p in descendants(pid) if comm(p).startswith(f"ray::{WORKER_NAME}")]


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def state(pid: int) -> str:
    """The process's state letter from /proc (``T`` stopped, ``Z`` zombie), or "" when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rindex(")") + 2]


def alive(pid: int) -> bool:
    return state(pid) not in ("", "Z")


@contextlib.contextmanager
def cluster_network(directory: Path, env: dict[int, dict[str, str]] | None = None, **settings: object):
    """Three helpers with two Ray workers each; afterwards, every process they started is gone."""
    local = LocalNetwork(directory, workers=WORKERS, **settings)
    started: list[int] = []
    try:
        for i, helper in enumerate(local.helpers):  # one after the other: a cluster starts at a time
            helper.start(timeout=240, env=(env or {}).get(i + 1))
        started = [p for h in local.helpers for p in descendants(h.pid or 0)]
        yield local
    finally:
        local.stop()
        end = time.monotonic() + 60
        while any(map(alive, started)) and time.monotonic() < end:
            time.sleep(0.2)
        left = [p for p in started if alive(p)]
        for pid in left:  # do not leak them into the rest of the run, but fail the test
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        assert not left, f"processes of the helpers' Ray clusters outlived them: {left}"
