"""A one-line progress bar for a terminal; silent when the stream is not one."""

from __future__ import annotations

from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """``update(phase, fraction)`` redraws ``[#####.....]  40%  sort``; ``close`` ends the line."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self._stream = stream
        self._width = width
        self._shown = stream.isatty()
        self._drawn = False

    def update(self, phase: str, fraction: float) -> None:
        if not self._shown:
            return
        done = round(max(0.0, min(1.0, fraction)) * self._width)
        bar = "#" * done + "." * (self._width - done)
        self._stream.write(f"\r[{bar}] {fraction:4.0%}  {phase:<12}")
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
