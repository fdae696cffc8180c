"""One thread that runs every deadline of a helper, instead of one sleeping thread per query.

A pending query used to hold a ``threading.Timer`` (an OS thread) for its
whole upload deadline; with :class:`Deadlines` any number of pending
queries cost one thread and a heap entry each.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

__all__ = ["Deadlines"]


class Deadlines:
    """Calls ``fn(*args)`` after a delay, from one daemon thread; :meth:`close` drops what is left.

    Callbacks run one after another on that thread, so they must be short
    (ending a query is: its peer notices fail fast or time out in 10 s).
    An exception goes to ``on_error`` and the thread carries on.
    """

    def __init__(
        self, name: str = "deadlines", on_error: Callable[[Exception], None] | None = None
    ) -> None:
        self._on_error = on_error
        self._heap: list[tuple[float, int, Callable[..., object], tuple[object, ...]]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def call_later(self, delay: float, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` in about ``delay`` seconds (exceptions are the callee's to handle)."""
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), fn, args))
            self._cond.notify()

    def close(self) -> None:
        """Stop the thread; pending calls never run."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
        self._thread.join(5.0)

    def __len__(self) -> int:
        with self._cond:
            return len(self._heap)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                if self._closed:
                    return
                _, _, fn, args = heapq.heappop(self._heap)
            try:
                fn(*args)
            except Exception as exc:  # one failing callback must not stop the others
                if self._on_error is not None:
                    self._on_error(exc)
