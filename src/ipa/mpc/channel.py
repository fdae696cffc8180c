"""The channel interface every transport implements, with per-step accounting.

A party talks only to its two neighbours: ``NEXT`` (party i+1) and ``PREV``
(party i-1). A message is a list of numpy arrays sent under a step name; each
(step, direction) carries at most one message, which both keeps the protocol
deterministic and lets the receiver match messages without ordering. The
in-memory runner and the gRPC transport subclass :class:`Channel` and supply
only ``_deliver`` and ``_collect``; counting and step checks live here once.

**Rounds** are communication rounds, i.e. latency: the longest chain of
messages each of which was sent after the previous one was received. Every
message carries its depth (one more than the deepest message its sender had
received when sending), as a trailing one-word ``uint32`` array that the
transport carries like any other and :meth:`Channel.receive` strips again;
it is public (a function of the protocol alone) and not counted in
``bytes_sent``. Messages sent without waiting for each other share a round,
so e.g. the shuffle's three steps take 2 rounds.
"""

from __future__ import annotations

import enum
import threading
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ipa.errors import ProtocolError, TransportError

__all__ = ["Channel", "CommStats", "Peer"]

_DEPTH = np.dtype(np.uint32)


class Peer(enum.IntEnum):
    """A neighbour, as the offset of its party index from ours (mod 3)."""

    NEXT = 1
    PREV = 2

    def of(self, party: int) -> int:
        """The index of this neighbour of ``party``."""
        return (party + self.value) % 3


@dataclass
class CommStats:
    """Bytes sent, communicating steps and message depths, per step and in total.

    ``depths[step]`` is the (lowest, highest) depth of the messages this party
    sent or received at ``step``.
    """

    bytes_sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    steps: set[str] = field(default_factory=set)
    depths: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_sent.values())

    @property
    def rounds(self) -> int:
        """Communication rounds (latency) seen by this party: the deepest message it
        sent or received, less the depth its first one started from.
        """
        if not self.depths:
            return 0
        return max(hi for _, hi in self.depths.values()) - min(lo for lo, _ in self.depths.values()) + 1

    def note_depth(self, step: str, depth: int) -> None:
        """Record a message of ``depth`` sent or received at ``step``."""
        lo, hi = self.depths.get(step, (depth, depth))
        self.depths[step] = (min(lo, depth), max(hi, depth))

    def under(self, prefix: str) -> CommStats:
        """The part of the statistics recorded at or below step ``prefix``."""

        def inside(step: str) -> bool:
            return step == prefix or step.startswith(prefix + "/")

        sub = CommStats()
        for step, n in self.bytes_sent.items():
            if inside(step):
                sub.bytes_sent[step] = n
        sub.steps = {s for s in self.steps if inside(s)}
        sub.depths = {s: d for s, d in self.depths.items() if inside(s)}
        return sub


class Channel(ABC):
    """Messages to and from the two neighbours of one party, keyed by step."""

    def __init__(self, party: int) -> None:
        self.party = party
        self.stats = CommStats()
        self._used: set[tuple[str, Peer, str]] = set()
        self._lock = threading.Lock()
        self._depth = 0  # the deepest message received so far

    def send(self, step: str, to: Peer, arrays: Sequence[np.ndarray]) -> None:
        """Send ``arrays`` to neighbour ``to`` under ``step`` (at most once per step and peer)."""
        self._claim(step, to, "send")
        arrays = [np.ascontiguousarray(a) for a in arrays]
        with self._lock:
            self.stats.bytes_sent[step] += sum(a.nbytes for a in arrays)
            self.stats.steps.add(step)
            depth = self._depth + 1
            self.stats.note_depth(step, depth)
        self._deliver(step, to, [*arrays, np.array([depth], _DEPTH)])

    def receive(self, step: str, frm: Peer, like: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Receive the message neighbour ``frm`` sent under ``step``.

        ``like`` gives the dtype and shape each received array must have; any
        difference is a :class:`TransportError`.
        """
        self._claim(step, frm, "receive")
        message = self._collect(step, frm)
        arrays, tag = message[:-1], (message[-1] if message else None)
        if not isinstance(tag, np.ndarray) or tag.dtype != _DEPTH or tag.shape != (1,):
            raise TransportError(f"message at step {step!r} from {frm.name} has no depth")
        with self._lock:
            self.stats.steps.add(step)
            self._depth = max(self._depth, int(tag[0]))
            self.stats.note_depth(step, int(tag[0]))
        if len(arrays) != len(like) or any(
            a.dtype != b.dtype or a.shape != b.shape for a, b in zip(arrays, like, strict=False)
        ):
            raise TransportError(f"message at step {step!r} from {frm.name} has the wrong layout")
        return arrays

    def _claim(self, step: str, peer: Peer, verb: str) -> None:
        key = (step, peer, verb)
        with self._lock:
            if key in self._used:
                raise ProtocolError(f"step {step!r} used twice to {verb} with {peer.name}")
            self._used.add(key)

    @abstractmethod
    def _deliver(self, step: str, to: Peer, arrays: list[np.ndarray]) -> None:
        """Hand the message to the transport (must not block on the receiver)."""

    @abstractmethod
    def _collect(self, step: str, frm: Peer) -> list[np.ndarray]:
        """Block until the message from ``frm`` at ``step`` arrives; raise TransportError on timeout."""
