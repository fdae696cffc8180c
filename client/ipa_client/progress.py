"""Progress of a query on stderr, one line per phase, drawn with ``rich``; silent off a terminal.

A query goes through the client's phases (the simulated user agents
encrypting match keys, building the reports, uploading them) and then the
helpers' (decrypt, sort, attribute, cap, aggregate, noise, release, as
their status reports them). :class:`QueryProgress` shows each as it starts:
counts, rate and time left where the phase has a known size (users
encrypted, bytes uploaded), a spinner and the time spent where it has not
(the helpers report only which phase runs). Finished phases stay on screen
with their duration.

When stderr is not a terminal (a pipe, a file, CI) nothing is drawn, so logs
and scripts stay clean. ``rich`` redraws at most a few times a second from
its own thread; every method is thread-safe (the three upload threads report
their bytes concurrently).
"""

from __future__ import annotations

import contextlib
import sys
import termios
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TaskID, TextColumn
from rich.text import Text

__all__ = ["PHASE_LABELS", "QueryProgress", "follow"]

# What each phase is called on screen; helper phases in the order they run.
PHASE_LABELS = {
    "generate": "synthetic events",
    "start helpers": "starting three helpers (keys, TLS)",
    "encrypt": "user agents encrypt match keys",
    "share": "secret-sharing the events",
    "prepare": "building the reports",
    "upload": "uploading to H1, H2, H3",
    "awaiting_upload": "helpers receive the reports",
    "decrypt": "helpers decrypt and check reports",
    "sort": "sort (by match key, time)",
    "attribute": "attribute (last touch)",
    "cap": "cap (per user)",
    "aggregate": "aggregate (per breakdown key)",
    "noise": "add DP noise",
    "release": "release result shares",
}
# "sort" … "noise" are also the phases of the in-memory simulation (ipa simulate).
_HELPER_PHASES = ("awaiting_upload", "decrypt", "sort", "attribute", "cap", "aggregate", "noise", "release")


class _CountColumn(ProgressColumn):
    """``41,230/100,000 users`` or ``12.3/45.0 MB``; empty for a phase of unknown size."""

    def render(self, task: Task) -> Text:
        if task.total is None or not task.fields.get("sized", True):
            return Text("")
        unit = task.fields.get("unit", "")
        if unit == "bytes":
            done, total = decimal(int(task.completed)), decimal(int(task.total))
            return Text(f"{done}/{total}", style="progress.download")
        return Text(f"{int(task.completed):,}/{int(task.total):,} {unit}", style="progress.download")


class _RateColumn(ProgressColumn):
    """``2,103 users/s`` while a counted phase runs."""

    def render(self, task: Task) -> Text:
        if task.total is None or not task.speed or task.finished:
            return Text("")
        unit = task.fields.get("unit", "")
        if unit == "bytes":
            return Text(f"{decimal(int(task.speed))}/s", style="progress.data.speed")
        return Text(f"{task.speed:,.0f} {unit}/s", style="progress.data.speed")


class _TimeColumn(ProgressColumn):
    """Time left (``eta 0:12``) while a counted phase runs; else time spent (``3.2 s``)."""

    def render(self, task: Task) -> Text:
        if not task.finished and task.total is not None and task.time_remaining is not None:
            minutes, seconds = divmod(int(task.time_remaining + 0.5), 60)
            return Text(f"eta {minutes}:{seconds:02d}", style="progress.remaining")
        elapsed = task.finished_time if task.finished else task.elapsed
        return Text(f"{elapsed or 0.0:.1f} s", style="progress.elapsed")


class QueryProgress:
    """The phases of one query on stderr; a context manager. Draws nothing unless stderr is a terminal.

    ``start(phase, total, unit)`` begins a phase (ending the one before);
    ``advance(n)`` counts in it; ``helpers(phase, fraction)`` is the
    callback for the helpers' status (phases they have passed are ended).
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = self.console.is_terminal
        self._progress = Progress(
            SpinnerColumn(finished_text="[green]✓"),
            TextColumn("{task.description:<36}"),
            BarColumn(bar_width=24),
            _CountColumn(),
            _RateColumn(),
            _TimeColumn(),
            console=self.console,
            disable=not self.enabled,
            refresh_per_second=5,
        )
        self._current: TaskID | None = None
        self._phase = ""
        self._echo: list[Any] | None = None

    def __enter__(self) -> QueryProgress:
        if self.enabled:
            self._echo = _hide_control_echo()
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop drawing (an unfinished phase stays as it was)."""
        self._progress.stop()
        _restore_echo(self._echo)
        self._echo = None

    @property
    def phase(self) -> str:
        """The phase shown last (``""`` before the first)."""
        return self._phase

    def start(self, phase: str, total: int | None = None, unit: str = "") -> None:
        """Begin ``phase`` (a key of PHASE_LABELS or any text); a size makes a bar, rate and ETA."""
        self._end_current()
        self._phase = phase
        label = PHASE_LABELS.get(phase, phase)
        self._current = self._progress.add_task(label, total=total, unit=unit, sized=bool(unit or total))

    def advance(self, amount: int = 1, total: int | None = None) -> None:
        """Count ``amount`` more done in the current phase (of ``total``, if it is given now)."""
        if self._current is None:
            return
        if total is not None:
            self._progress.update(self._current, total=total)
        self._progress.advance(self._current, amount)

    def finish(self) -> None:
        """End the current phase."""
        self._end_current()
        self._phase = "done"

    def helpers(self, phase: str, fraction: float) -> None:
        """The slowest helper is in ``phase`` (``fraction`` of the query done): show it if it is new."""
        del fraction  # the helpers report whole phases; the lines say which
        if phase == self._phase:
            return
        if self._phase in _HELPER_PHASES and (phase in _HELPER_PHASES or phase == "done"):
            # Phases too short to be seen between two polls still get their line.
            passed = _HELPER_PHASES.index(self._phase) + 1
            upto = _HELPER_PHASES.index(phase) if phase != "done" else len(_HELPER_PHASES)
            for skipped in _HELPER_PHASES[passed:upto]:
                self.start(skipped)
        if phase == "done":
            self.finish()
        else:
            self.start(phase)

    def _end_current(self) -> None:
        if self._current is None:
            return
        task = self._progress.tasks[self._current]
        total = task.total if task.total is not None else 1
        self._progress.update(self._current, total=total, completed=total)
        self._current = None


def follow(progress: QueryProgress) -> Callable[[str, float], None]:
    """The ``on_progress`` callback of ``ReportCollector.submit`` that draws on ``progress``."""

    def on_progress(phase: str, fraction: float) -> None:
        if phase == "upload":
            progress.start("upload", total=None, unit="bytes")
        elif phase == "prepare":
            progress.start("prepare")
        else:
            progress.helpers(phase, fraction)

    return on_progress


def _hide_control_echo() -> list[Any] | None:
    """Stop the terminal echoing ``^C`` into the live display; the old settings, or None."""
    try:
        fd = sys.stdin.fileno()
        if not sys.stdin.isatty():
            return None
        old = termios.tcgetattr(fd)
        new = [*old[:3], old[3] & ~termios.ECHOCTL, *old[4:]]
        termios.tcsetattr(fd, termios.TCSANOW, new)
        return old
    except (OSError, ValueError, termios.error):  # no usable stdin: nothing to hide
        return None


def _restore_echo(old: list[Any] | None) -> None:
    if old is None:
        return
    with contextlib.suppress(OSError, ValueError, termios.error):
        termios.tcsetattr(sys.stdin.fileno(), termios.TCSANOW, old)
