"""Peak memory per phase, from ``tracemalloc`` (numpy reports every array to it).

:class:`PhaseMemory` records, for each labelled stretch of a run, the peak of
the bytes traced during it and the bytes still held at its end. The bench's
own stages are marked by the caller (``mark("generate")``); the query's phases
are marked through :meth:`PhaseMemory.hook`, the ``on_phase`` hook of
:func:`ipa.attribution.pipeline.run_query`: the three helpers are threads that
reach a phase's end at about the same time (each phase ends with messages
from the others), and the phase is closed when the last of them reports it.
So a phase's peak is that of all three helpers together, plus whatever the
bench itself holds (the events, the input shares).

Traced bytes leave out the interpreter and the allocator's slack, so the
process's RSS is higher by a roughly constant amount (about 100 MiB) and by
fragmentation; tracing slows pure-Python code, so times taken with it on are
not comparable with those taken without.
"""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["PhaseMemory"]


@dataclass
class PhaseMemory:
    """Peak and held traced bytes per labelled stretch (see the module docstring)."""

    parties: int = 3
    peak: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)
    _reported: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        """Start tracing (or restart the peak, if tracing already runs)."""
        if not tracemalloc.is_tracing():
            tracemalloc.start()
        tracemalloc.reset_peak()

    def stop(self) -> None:
        tracemalloc.stop()

    def mark(self, label: str) -> None:
        """Close the stretch since the previous mark under ``label``."""
        current, peak = tracemalloc.get_traced_memory()
        self.peak[label] = max(self.peak.get(label, 0), peak)
        self.held[label] = current
        tracemalloc.reset_peak()

    def hook(self) -> Callable[[str], None]:
        """An ``on_phase`` hook for each party: the phase closes when all parties have reported it."""

        def on_phase(phase: str) -> None:
            with self._lock:
                self._reported[phase] = self._reported.get(phase, 0) + 1
                if self._reported[phase] == self.parties:
                    self.mark(phase)

        return on_phase

    def per_row(self, rows: int) -> dict[str, dict[str, float]]:
        """``{label: {"peak": bytes per row, "held": bytes per row}}`` in the order marked."""
        rows = max(rows, 1)
        return {k: {"peak": self.peak[k] / rows, "held": self.held[k] / rows} for k in self.peak}
