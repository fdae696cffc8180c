"""The W workers of one helper, and the exchanges among them (``docs/scaling.md``).

A helper may spread a query's rows over W workers. Worker k of H1, H2 and H3
form *triple k*, which talks through its :class:`~ipa.mpc.channel.Channel`
exactly as three single-process helpers do. A *distributed* protocol also
moves rows between the W workers of one helper, through a :class:`Collective`:
inside that helper only, never between helpers, and only what that helper
holds already (its own share components, or public values such as opened
destinations) crosses. Nothing here talks to another helper, so a
collective adds nothing to what any helper learns.

An exchange is keyed by the step path, like a channel message: each worker
sends at most one message to each other worker per step, which keeps the
protocol deterministic and lets a receiver match messages without ordering.
The in-memory group (:class:`MemoryCollectives`) and the helper's Ray
transport subclass :class:`Collective` and supply only ``_deliver`` and
``_collect``; counting and step checks live here once.

**PRSS.** ``Collective.prss`` holds seeds that every worker of this helper
shares with the same neighbouring helper's workers: what all W workers must
draw alike (a permutation of all n rows of a shuffle) comes from there, and
what only triple k needs (masks of its rows) from the triple's own PRSS.
"""

from __future__ import annotations

import itertools
import threading
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ipa.errors import ProtocolError, TransportError
from ipa.mpc.prss import PRSS

__all__ = ["Collective", "CollectiveStats", "MemoryCollectives", "slices"]


def slices(n: int, workers: int) -> list[slice]:
    """The W contiguous row slices of n rows: sizes differ by at most one, larger ones first.

    A function of n and W alone, so the three helpers cut alike.
    """
    if workers < 1 or n < 0:
        raise ValueError(f"workers must be at least 1 and n at least 0, got {workers} and {n}")
    bounds = np.cumsum([0] + [n // workers + (k < n % workers) for k in range(workers)])
    return [slice(int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds)]


@dataclass
class CollectiveStats:
    """Bytes this worker sent to the other workers of its helper, per step."""

    bytes_sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_sent.values())


class Collective(ABC):
    """Worker ``index`` of the ``size`` workers of one helper, and its exchanges with the others."""

    def __init__(self, index: int, size: int, prss: PRSS) -> None:
        if not 0 <= index < size:
            raise ValueError(f"worker index must be in range({size}), got {index}")
        self.index = index
        self.size = size
        self.prss = prss
        self.stats = CollectiveStats()
        self._used: set[str] = set()
        self._lock = threading.Lock()

    def all_to_all(self, step: str, parts: Sequence[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
        """Send ``parts[j]`` to worker j; return the arrays each worker sent here, by sender.

        ``parts[self.index]`` stays here (not copied, not counted). Every
        worker of the helper must call this at ``step``, once.
        """
        if len(parts) != self.size:
            raise ValueError(f"all_to_all needs one part per worker ({self.size}), got {len(parts)}")
        self._claim(step)
        for to, arrays in enumerate(parts):
            if to != self.index:
                message = [np.ascontiguousarray(a) for a in arrays]
                with self._lock:
                    self.stats.bytes_sent[step] += sum(a.nbytes for a in message)
                self._deliver(step, to, message)
        return [list(parts[k]) if k == self.index else self._collect(step, k) for k in range(self.size)]

    def all_gather(self, step: str, arrays: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
        """Send the same ``arrays`` to every worker; return every worker's arrays, by worker."""
        return self.all_to_all(step, [arrays] * self.size)

    def _claim(self, step: str) -> None:
        with self._lock:
            if step in self._used:
                raise ProtocolError(f"collective step {step!r} used twice by worker {self.index}")
            self._used.add(step)

    @abstractmethod
    def _deliver(self, step: str, to: int, arrays: list[np.ndarray]) -> None:
        """Hand the message to worker ``to`` (must not block on the receiver)."""

    @abstractmethod
    def _collect(self, step: str, frm: int) -> list[np.ndarray]:
        """Block until worker ``frm``'s message at ``step`` arrives; TransportError on timeout."""


class MemoryCollectives:
    """The W workers of one helper as threads of one process: ``group.member(k)``.

    A failure anywhere calls :meth:`abort`, which wakes every waiting worker
    with a TransportError instead of leaving it waiting.
    """

    def __init__(self, size: int, prss: PRSS, timeout: float = 600.0) -> None:
        self.size = size
        self.timeout = timeout
        self._prss = prss
        self._boxes: dict[tuple[int, int, str], list[np.ndarray]] = {}
        self._cond = threading.Condition()
        self._failed = False

    def member(self, index: int) -> Collective:
        """Worker ``index``'s view of the group (each member has its own PRSS object, same seeds)."""
        return _MemoryCollective(index, self)

    def abort(self) -> None:
        with self._cond:
            self._failed = True
            self._cond.notify_all()

    def put(self, key: tuple[int, int, str], arrays: list[np.ndarray]) -> None:
        view = [a.view() for a in arrays]
        for a in view:
            a.flags.writeable = False  # the receiver cannot write into the sender's memory
        with self._cond:
            self._boxes[key] = view
            self._cond.notify_all()

    def take(self, key: tuple[int, int, str]) -> list[np.ndarray]:
        with self._cond:
            ready = self._cond.wait_for(lambda: key in self._boxes or self._failed, timeout=self.timeout)
            if key in self._boxes:
                return self._boxes.pop(key)
        reason = "another worker failed" if ready else f"timed out after {self.timeout} s"
        raise TransportError(f"no message at collective step {key[2]!r} from worker {key[0]}: {reason}")

    def seeds(self) -> PRSS:
        return PRSS(*self._prss.derived_seeds("workers"))


class _MemoryCollective(Collective):
    def __init__(self, index: int, group: MemoryCollectives) -> None:
        super().__init__(index, group.size, group.seeds())
        self._group = group

    def _deliver(self, step: str, to: int, arrays: list[np.ndarray]) -> None:
        self._group.put((self.index, to, step), arrays)

    def _collect(self, step: str, frm: int) -> list[np.ndarray]:
        return self._group.take((frm, self.index, step))
