"""Epochs: the periods a user agent's match key and a site's privacy budget are counted in.

A helper network publishes its epoch schedule in ``network.toml``::

    [epochs]
    length_seconds = 604800   # a week (the default)
    origin = 0                # Unix time at which epoch 0 starts (the default)

Epoch ``e`` is ``[origin + e·length, origin + (e+1)·length)``. A user agent
derives its current epoch from its own clock (:meth:`EpochSchedule.epoch_at`)
and binds every encrypted match key to it; a query spans one or more
consecutive epochs, each charged to the querying site; helpers refuse
reports made outside a query's epochs. Epochs are two-byte numbers
(``ipa.crypto.binding.MAX_EPOCH``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ipa._checks import integer
from ipa.crypto.binding import MAX_EPOCH
from ipa.errors import InputError

__all__ = ["DEFAULT_EPOCH_SECONDS", "EpochSchedule", "parse_epochs"]

DEFAULT_EPOCH_SECONDS = 7 * 86_400


@dataclass(frozen=True)
class EpochSchedule:
    """Epochs of ``length_seconds`` from Unix time ``origin``; InputError for bad values."""

    length_seconds: int = DEFAULT_EPOCH_SECONDS
    origin: int = 0

    def __post_init__(self) -> None:
        integer("length_seconds", self.length_seconds, 1)
        integer("origin", self.origin, 0)

    @classmethod
    def from_dict(cls, table: Mapping[str, Any] | None) -> EpochSchedule:
        """The ``[epochs]`` table of ``network.toml`` (absent: the defaults)."""
        table = dict(table or {})
        unknown = set(table) - {"length_seconds", "origin"}
        if unknown:
            raise InputError(f"[epochs] has unknown fields: {', '.join(sorted(unknown))}")
        return cls(**table)

    def to_dict(self) -> dict[str, int]:
        return {"length_seconds": self.length_seconds, "origin": self.origin}

    def epoch_at(self, when: float) -> int:
        """The epoch that Unix time ``when`` falls in; InputError before epoch 0 or after the last."""
        if not math.isfinite(when) or when < self.origin:
            raise InputError(f"time {when} is before epoch 0 (origin {self.origin})")
        epoch = int((when - self.origin) // self.length_seconds)
        if epoch > MAX_EPOCH:
            raise InputError(f"time {when} is after the last epoch ({MAX_EPOCH})")
        return epoch

    def epochs_of(self, timestamps: np.ndarray) -> np.ndarray:
        """The epoch of every timestamp (Unix seconds), as int64."""
        t = np.asarray(timestamps, dtype=np.uint64)
        if len(t) and int(t.min()) < self.origin:
            raise InputError(f"a timestamp is before epoch 0 (origin {self.origin})")
        return ((t - np.uint64(self.origin)) // np.uint64(self.length_seconds)).astype(np.int64)

    def start(self, epoch: int) -> int:
        """The Unix time at which ``epoch`` starts."""
        return self.origin + integer("epoch", epoch, 0, MAX_EPOCH) * self.length_seconds


def parse_epochs(text: str) -> tuple[int, int]:
    """``"E"`` or ``"E0-E1"`` as ``(first, last)``; InputError unless ``0 <= E0 <= E1 <= MAX_EPOCH``."""
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", text.strip())
    if not match:
        raise InputError(f"epoch must be E or E0-E1 (non-negative integers), got {text!r}")
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) is not None else first
    if not 0 <= first <= last <= MAX_EPOCH:
        raise InputError(f"epochs must satisfy 0 <= E0 <= E1 <= {MAX_EPOCH}, got {text!r}")
    return first, last
