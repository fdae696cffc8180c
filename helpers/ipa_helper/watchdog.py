"""Deadlines on a stream the helper reads: idle time between items and total time.

A collector that opens an upload and then stalls must not hold its query (and
the query's reserved ε) or a server thread forever. :class:`Watchdog` wraps the
chunk iterator; one timer thread per stream checks the two deadlines and, when
one passes, records why and calls ``interrupt`` (which must make the blocked
iterator raise: for gRPC, cancelling the call).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

__all__ = ["Watchdog"]

T = TypeVar("T")


class Watchdog:
    """Interrupts a stream idle for ``idle`` seconds or open for ``total`` seconds."""

    def __init__(self, idle: float, total: float, interrupt: Callable[[], object]) -> None:
        self._idle, self._total, self._interrupt = idle, total, interrupt
        self._started = self._touched = time.monotonic()
        self._done = threading.Event()
        self.expired = ""  # why the stream was interrupted ("" while it was not)
        self._thread = threading.Thread(target=self._watch, name="upload-watchdog", daemon=True)
        self._thread.start()

    def watch(self, items: Iterable[T]) -> Iterator[T]:
        """The items, each one resetting the idle deadline."""
        for item in items:
            self._touched = time.monotonic()
            yield item

    def stop(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        while True:
            now = time.monotonic()
            idle_end, total_end = self._touched + self._idle, self._started + self._total
            if now >= total_end:
                self.expired = f"the upload took longer than {self._total:g} s"
            elif now >= idle_end:
                self.expired = f"no upload data for {self._idle:g} s"
            if self.expired:
                self._interrupt()
                return
            if self._done.wait(min(idle_end, total_end) - now):
                return
