"""The in-memory three-party runner: three threads, one process, real messages.

``run_three(protocol, inputs)`` runs ``protocol(ctx, input_i)`` as parties
0, 1, 2 in three threads joined by in-memory channels. Fresh pairwise PRSS
seeds come from the operating system's CSPRNG. If one party fails, the others
are woken with a TransportError instead of waiting forever, and the first
failure is re-raised in the caller.

**Tamper harness** (malicious-security tests, ``docs/malicious.md``): with
``tamper=Tamper(party, step, ...)`` one party alters one message it sends at
step path ``step``, after it left the protocol and before the receiver sees it:
it adds 1 to one word (wrapping) or flips one bit of it. ``RunResult.messages``
lists every message each party sent, as :class:`Sent` records (sender, step,
receiver), so a test can run once honestly and then tamper with each of them.
A tamper that matches no message (or only an empty one) is a ValueError after
the run, so a sweep can never pass vacuously.

**Workers** (``docs/scaling.md``): ``run_workers(protocol, inputs, workers=W)``
runs each helper as W workers, 3·W threads: each helper's workers form one
:class:`~ipa.mpc.collective.MemoryCollectives` group (seeds derived
``workers`` from the helper's PRSS), and worker k of the three helpers form
triple k, with its own in-memory channels and PRSS derived ``worker/k``, and
root step ``w<k>`` as in a helper. A failure anywhere wakes every thread.

A deadlock is detected at once: when every party still running waits for a
message that nobody has sent (e.g. sender and receiver disagree on a step),
the waiting parties fail with a ProtocolError naming each party's pending
receive and every message sent but not received.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

import numpy as np

from ipa.errors import ProtocolError, TransportError
from ipa.mpc.channel import Channel, CommStats, Peer
from ipa.mpc.collective import CollectiveStats, MemoryCollectives, worker_label
from ipa.mpc.context import Context
from ipa.mpc.prss import PRSS, SEED_BYTES
from ipa.mpc.verifier import Verifier

__all__ = [
    "SECURITY_MODES",
    "RunResult",
    "Sent",
    "Tamper",
    "WorkersResult",
    "run_parties",
    "run_three",
    "run_workers",
]

SECURITY_MODES = ("semi-honest", "malicious")

T = TypeVar("T")


@dataclass(frozen=True, order=True)
class Sent:
    """One message a run carried: ``party`` sent it at ``step`` to party ``to`` (0-based)."""

    party: int
    step: str
    to: int
    words: tuple[int, ...] = field(default=(), compare=False)
    """Words in each array of the message (a sweep can tamper with each array)."""

    def __str__(self) -> str:
        return f"H{self.party + 1} {self.step} -> H{self.to + 1}"


@dataclass(frozen=True)
class Tamper:
    """Party ``party`` (0-based) alters the first message it sends at ``step`` (to ``to``, if given).

    ``kind`` is ``"add"`` (add 1 to the word, wrapping in its dtype) or
    ``"flip"`` (XOR bit ``bit`` of it); the word is number ``index`` of the
    message's first non-empty array (or of array number ``array``), flattened
    (negative: from the end, −1 the last).
    """

    party: int
    step: str
    kind: str = "add"
    to: int | None = None
    index: int = 0
    bit: int = 0
    array: int | None = None

    def __post_init__(self) -> None:
        if self.party not in (0, 1, 2):
            raise ValueError(f"party must be 0, 1 or 2, got {self.party}")
        if self.kind not in ("add", "flip"):
            raise ValueError(f"kind must be 'add' or 'flip', got {self.kind!r}")

    @classmethod
    def at(cls, sent: Sent, kind: str = "add", **kwargs: int) -> Tamper:
        """The tamper of the one message ``sent``."""
        return cls(sent.party, sent.step, kind, sent.to, **kwargs)

    def matches(self, party: int, step: str, to: int) -> bool:
        return party == self.party and step == self.step and self.to in (None, to)

    def apply(self, arrays: list[np.ndarray]) -> list[np.ndarray] | None:
        """A copy of ``arrays`` with one word altered, or None if there is no word to alter."""
        if self.array is None:
            first = next((i for i, a in enumerate(arrays) if a.size), None)
        else:
            first = self.array if 0 <= self.array < len(arrays) and arrays[self.array].size else None
        if first is None:
            return None
        word = np.array(arrays[first]).reshape(-1)  # a copy: the sender's array stays intact
        if not -word.size <= self.index < word.size:
            raise ValueError(f"tamper index {self.index} is outside a message of {word.size} words")
        index = self.index % word.size
        if not 0 <= self.bit < word.dtype.itemsize * 8:
            raise ValueError(f"tamper bit {self.bit} is outside a {word.dtype.itemsize * 8}-bit word")
        at = slice(index, index + 1)  # array arithmetic: wraps without a warning
        if self.kind == "add":
            word[at] += np.array(1, word.dtype)
        else:
            word[at] ^= np.array(1, word.dtype) << np.array(self.bit, word.dtype)
        return [*arrays[:first], word.reshape(arrays[first].shape), *arrays[first + 1 :]]


class _Exchange:
    """Mailboxes shared by the three in-memory channels, and who waits for what.

    ``boxes`` maps (sender, receiver, step) to a message; ``waiting`` maps a
    blocked party to the (sender, step) it waits for.
    """

    def __init__(self, timeout: float, tamper: Tamper | None = None) -> None:
        self.timeout = timeout
        self.tamper = tamper
        self.tampered = False
        self.sent: list[Sent] = []
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
        receiver = to.of(self.party)
        with self._ex.cond:
            self._ex.sent.append(Sent(self.party, step, receiver, tuple(a.size for a in arrays[:-1])))
            tamper = self._ex.tamper
            if tamper and not self._ex.tampered and tamper.matches(self.party, step, receiver):
                altered = tamper.apply(arrays[:-1])  # never the trailing depth word
                if altered is not None:
                    arrays = [*altered, arrays[-1]]
                    self._ex.tampered = True
            msg = [_frozen(a) for a in arrays]
            self._ex.boxes[(self.party, receiver, step)] = msg
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
    messages: list[Sent] = field(default_factory=list)
    """Every message sent, sorted by sender, step and receiver."""

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
    tamper: Tamper | None = None,
    security: str = "semi-honest",
) -> RunResult[T]:
    """Run ``protocol(ctx, inputs[i])`` for parties i = 0, 1, 2 in three threads.

    With ``tamper``, one message is altered in transit (see the module docstring).
    ``security`` is ``"semi-honest"`` or ``"malicious"``: in malicious mode each
    party's context gets a fresh :class:`~ipa.mpc.verifier.Verifier`
    (``docs/malicious.md``).
    """
    if len(inputs) != 3:
        raise ValueError(f"inputs must have one entry per party, got {len(inputs)}")
    if security not in SECURITY_MODES:
        raise ValueError(f"security must be one of {', '.join(SECURITY_MODES)}, got {security!r}")
    exchange = _Exchange(timeout, tamper)
    seeds = [os.urandom(SEED_BYTES) for _ in range(3)]  # seeds[i] is shared by parties i and i+1
    channels = [_MemoryChannel(i, exchange) for i in range(3)]
    contexts = [
        Context(
            i,
            channels[i],
            PRSS(prev_seed=seeds[(i - 1) % 3], next_seed=seeds[i]),
            step,
            verifier=Verifier() if security == "malicious" else None,
        )
        for i in range(3)
    ]

    def body(ctx: Context, value: Any) -> T:
        output = protocol(ctx, value)  # a failure wakes the others through run_parties instead
        exchange.finished(ctx.party)
        return output

    bodies = [partial(body, ctx, value) for ctx, value in zip(contexts, inputs, strict=True)]
    outputs = run_parties(bodies, on_failure=exchange.abort)
    if tamper is not None and not exchange.tampered:
        raise ValueError(f"tamper {tamper} matched no non-empty message of the run")
    return RunResult(outputs, [c.stats for c in channels], sorted(exchange.sent))


@dataclass(frozen=True)
class WorkersResult(Generic[T]):
    """Each worker's output and statistics, indexed by helper, then worker."""

    outputs: list[list[T]]
    stats: list[list[CommStats]]
    """What worker k of each helper sent within triple k (its channel)."""
    collective: list[list[CollectiveStats]]
    """What each worker sent to the other workers of its helper."""
    messages: list[Sent] = field(default_factory=list)
    """Every triple message sent (steps start with the triple's root ``w<k>``)."""

    @property
    def workers(self) -> int:
        return len(self.outputs[0])

    def triple(self, k: int) -> RunResult[T]:
        """Triple k's outputs and channel statistics, as a three-party run."""
        return RunResult([self.outputs[i][k] for i in range(3)], [self.stats[i][k] for i in range(3)])

    @property
    def rounds(self) -> int:
        """Communication rounds of the slowest triple."""
        return max(self.triple(k).rounds for k in range(self.workers))

    def bytes_sent(self) -> list[int]:
        """Bytes each helper sent to the other helpers, summed over its workers."""
        return [sum(s.total_bytes for s in by_worker) for by_worker in self.stats]

    def collective_bytes(self) -> list[int]:
        """Bytes each helper's workers sent to each other, summed over its workers."""
        return [sum(s.total_bytes for s in by_worker) for by_worker in self.collective]


def run_workers(
    protocol: Callable[[Context, Any], T],
    inputs: Sequence[Sequence[Any]],
    *,
    workers: int,
    timeout: float = 600.0,
    tamper: Tamper | None = None,
    security: str = "semi-honest",
) -> WorkersResult[T]:
    """Run ``protocol(ctx, inputs[i][k])`` as worker k of helper i, for 3·W workers in threads.

    ``inputs[i]`` holds one entry per worker of helper i. Each context has
    its triple's channel and PRSS (derived ``worker/k`` from the helper's),
    root step ``w<k>``, and its helper's collective of W workers; in malicious
    mode a fresh Verifier per worker. ``tamper`` alters one triple message
    (its step names the triple: ``w<k>/…``). The first failure is re-raised
    once every thread has ended (a failure wakes all of them).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if len(inputs) != 3 or any(len(by_worker) != workers for by_worker in inputs):
        raise ValueError(f"inputs must have one entry per helper, each with one per worker ({workers})")
    if security not in SECURITY_MODES:
        raise ValueError(f"security must be one of {', '.join(SECURITY_MODES)}, got {security!r}")
    seeds = [os.urandom(SEED_BYTES) for _ in range(3)]
    helpers = [PRSS(prev_seed=seeds[(i - 1) % 3], next_seed=seeds[i]) for i in range(3)]
    groups = [MemoryCollectives(workers, prss, timeout) for prss in helpers]
    exchanges = [_Exchange(timeout, tamper) for _ in range(workers)]
    members = [[group.member(k) for k in range(workers)] for group in groups]
    channels = [[_MemoryChannel(i, exchanges[k]) for k in range(workers)] for i in range(3)]
    contexts = [
        [
            Context(
                i,
                channels[i][k],
                helpers[i].derive(worker_label(k)),
                f"w{k}",
                verifier=Verifier() if security == "malicious" else None,
                collective=members[i][k],
            )
            for k in range(workers)
        ]
        for i in range(3)
    ]

    def body(i: int, k: int) -> T:
        output = protocol(contexts[i][k], inputs[i][k])
        exchanges[k].finished(i)
        return output

    def abort() -> None:
        for ex in exchanges:
            ex.abort()
        for group in groups:
            group.abort()

    flat = run_parties([partial(body, i, k) for i in range(3) for k in range(workers)], on_failure=abort)
    if tamper is not None and not any(ex.tampered for ex in exchanges):
        raise ValueError(f"tamper {tamper} matched no non-empty message of the run")
    return WorkersResult(
        [flat[i * workers : (i + 1) * workers] for i in range(3)],
        [[c.stats for c in by_worker] for by_worker in channels],
        [[m.stats for m in by_worker] for by_worker in members],
        sorted(sent for ex in exchanges for sent in ex.sent),
    )
