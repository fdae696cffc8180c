"""The in-memory three-party runner: three threads, one process, real messages.

``run_three(protocol, inputs)`` runs ``protocol(ctx, input_i)`` as parties
0, 1, 2 in three threads joined by in-memory channels. Fresh pairwise PRSS
seeds come from the operating system's CSPRNG. If one party fails, the others
are woken with a TransportError instead of waiting forever, and the first
failure is re-raised in the caller.

A deadlock is detected at once: when every party still running waits for a
message that nobody has sent (e.g. sender and receiver disagree on a step),
the waiting parties fail with a ProtocolError naming each party's pending
receive and every message sent but not received.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

import numpy as np

from ipa.errors import ProtocolError, TransportError
from ipa.mpc.channel import Channel, CommStats, Peer
from ipa.mpc.context import Context
from ipa.mpc.prss import PRSS, SEED_BYTES

__all__ = ["RunResult", "run_parties", "run_three"]

T = TypeVar("T")


class _Exchange:
    """Mailboxes shared by the three in-memory channels, and who waits for what.

    ``boxes`` maps (sender, receiver, step) to a message; ``waiting`` maps a
    blocked party to the (sender, step) it waits for.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.boxes: dict[tuple[int, int, str], list[np.ndarray]] = {}
        self.cond = threading.Condition()
        self.failed = False
        self.deadlock = ""
        self.running = {0, 1, 2}
        self.waiting: dict[int, tuple[int, str]] = {}

    def abort(self) -> None:
        with self.cond:
            self.failed = True
            self.cond.notify_all()

    def finished(self, party: int) -> None:
        """``party`` has returned: those waiting for it may now be deadlocked."""
        with self.cond:
            self.running.discard(party)
            self._check_deadlock()

    def _check_deadlock(self) -> None:
        """With the lock held: fail the run if every running party waits for a message never sent."""
        stuck = self.running and all(p in self.waiting for p in self.running)
        if not stuck or any((frm, p, step) in self.boxes for p, (frm, step) in self.waiting.items()):
            return
        pending = "; ".join(
            f"H{p + 1} waits at {step!r} for H{frm + 1}" for p, (frm, step) in sorted(self.waiting.items())
        )
        unmatched = "; ".join(f"H{frm + 1} to H{to + 1} at {step!r}" for frm, to, step in sorted(self.boxes))
        done = ", ".join(f"H{p + 1}" for p in sorted({0, 1, 2} - self.running))
        self.deadlock = (
            f"deadlock: every running party waits for a message nobody sent. {pending}. "
            f"Sent but not received: {unmatched or 'nothing'}." + (f" Finished: {done}." if done else "")
        )
        self.failed = True
        self.cond.notify_all()


class _MemoryChannel(Channel):
    def __init__(self, party: int, exchange: _Exchange) -> None:
        super().__init__(party)
        self._ex = exchange

    def _deliver(self, step: str, to: Peer, arrays: list[np.ndarray]) -> None:
        # Read-only views: protocols never write into an array after sending it, and
        # the receiver cannot write into the sender's memory.
        msg = [_frozen(a) for a in arrays]
        with self._ex.cond:
            self._ex.boxes[(self.party, to.of(self.party), step)] = msg
            self._ex.cond.notify_all()

    def _collect(self, step: str, frm: Peer) -> list[np.ndarray]:
        ex, key = self._ex, (frm.of(self.party), self.party, step)
        with ex.cond:
            if key not in ex.boxes:
                ex.waiting[self.party] = key[0], step
                ex._check_deadlock()
                ready = ex.cond.wait_for(lambda: key in ex.boxes or ex.failed, timeout=ex.timeout)
                del ex.waiting[self.party]
            else:
                ready = True
            if key in ex.boxes:
                return ex.boxes.pop(key)
            if ex.deadlock:
                raise ProtocolError(ex.deadlock)
        reason = "another party failed" if ready else f"timed out after {ex.timeout} s"
        raise TransportError(f"no message at step {step!r} from {frm.name}: {reason}")


def _frozen(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True)
class RunResult(Generic[T]):
    """Each party's output and communication statistics, indexed by party."""

    outputs: list[T]
    stats: list[CommStats]

    @property
    def rounds(self) -> int:
        """Communication rounds of the slowest party."""
        return max(s.rounds for s in self.stats)

    def bytes_sent(self, prefix: str | None = None) -> list[int]:
        """Bytes each party sent, optionally only at or below step ``prefix``."""
        return [(s.under(prefix) if prefix else s).total_bytes for s in self.stats]


def run_parties(parties: Sequence[Callable[[], T]], on_failure: Callable[[], None] = lambda: None) -> list[T]:
    """Run each party's body in its own thread; return their outputs in order.

    ``on_failure`` is called as soon as a party fails (to wake the others);
    the first failure, in time, is re-raised once all threads have ended.
    """
    outputs: list[Any] = [None] * len(parties)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        try:
            outputs[i] = parties[i]()
        except BaseException as exc:
            with lock:
                errors.append(exc)
            on_failure()

    threads = [threading.Thread(target=run, args=(i,), name=f"H{i + 1}") for i in range(len(parties))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return outputs


def run_three(
    protocol: Callable[[Context, Any], T],
    inputs: Sequence[Any],
    *,
    step: str = "root",
    timeout: float = 600.0,
) -> RunResult[T]:
    """Run ``protocol(ctx, inputs[i])`` for parties i = 0, 1, 2 in three threads."""
    if len(inputs) != 3:
        raise ValueError(f"inputs must have one entry per party, got {len(inputs)}")
    exchange = _Exchange(timeout)
    seeds = [os.urandom(SEED_BYTES) for _ in range(3)]  # seeds[i] is shared by parties i and i+1
    channels = [_MemoryChannel(i, exchange) for i in range(3)]
    contexts = [
        Context(i, channels[i], PRSS(prev_seed=seeds[(i - 1) % 3], next_seed=seeds[i]), step)
        for i in range(3)
    ]

    def body(ctx: Context, value: Any) -> T:
        output = protocol(ctx, value)  # a failure wakes the others through run_parties instead
        exchange.finished(ctx.party)
        return output

    bodies = [partial(body, ctx, value) for ctx, value in zip(contexts, inputs, strict=True)]
    outputs = run_parties(bodies, on_failure=exchange.abort)
    return RunResult(outputs, [c.stats for c in channels])
