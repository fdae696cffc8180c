"""Structured logs: one JSON object per line on stderr.

Only lifecycle facts are logged (query id, state, phase, counts, timings,
error kinds). Never a share, a key, a match key, a token or a result: the
call sites pass only such facts, and :func:`event` accepts only str, int,
float and bool values, so an array cannot slip in by accident.
"""

from __future__ import annotations

import json
import sys
import threading
import time

__all__ = ["event"]

_lock = threading.Lock()


def event(helper: int, name: str, **fields: str | int | float | bool) -> None:
    """Write one log line ``{"ts", "helper", "event", ...fields}``."""
    for key, value in fields.items():
        if not isinstance(value, str | int | float | bool):
            raise TypeError(f"log field {key} must be a plain value, got {type(value).__name__}")
    line = json.dumps({"ts": round(time.time(), 3), "helper": helper, "event": name, **fields})
    with _lock:
        print(line, file=sys.stderr, flush=True)
