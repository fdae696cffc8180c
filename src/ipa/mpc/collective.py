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
draw alike (how many rows a shuffle's permutation moves from each worker to
each other, :func:`transfer_counts`) comes from there, and what only triple
k needs (masks of its rows, the local permutations of its rows) from the
triple's own PRSS.

**Rows over workers.** :class:`Blocks` says which contiguous block of the n
rows each worker holds; :func:`permute_blocks` applies a permutation of all n
rows given as a random routing (a local permutation of each worker's rows,
the W×W counts, a local permutation of what each worker receives), with
O(n/W + W) work per worker, and :func:`route` sends each row to a global
position only its holder knows (public positions, such as opened
destinations). Both move only the rows that change worker, in one
all-to-all, and no Python loop runs over rows.
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

__all__ = [
    "GROUP_LABEL",
    "MAX_SHUFFLED_ROWS",
    "Blocks",
    "Collective",
    "CollectiveStats",
    "MemoryCollectives",
    "permute_blocks",
    "route",
    "slices",
    "transfer_counts",
    "worker_label",
]

GROUP_LABEL = "workers"
"""The PRSS derivation label of a helper's group of workers (``HMAC(seed, "workers")``)."""


def worker_label(k: int) -> str:
    """The PRSS derivation label of worker triple ``k`` (``HMAC(seed, "worker/k")``)."""
    return f"worker/{k}"


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
        return self._prss.derive(GROUP_LABEL)


class _MemoryCollective(Collective):
    def __init__(self, index: int, group: MemoryCollectives) -> None:
        super().__init__(index, group.size, group.seeds())
        self._group = group

    def _deliver(self, step: str, to: int, arrays: list[np.ndarray]) -> None:
        self._group.put((self.index, to, step), arrays)

    def _collect(self, step: str, frm: int) -> list[np.ndarray]:
        return self._group.take((frm, self.index, step))


@dataclass(frozen=True)
class Blocks:
    """Where n rows lie over W workers: worker k holds rows ``bounds[k]:bounds[k + 1]`` (contiguous,
    in worker order, possibly empty)."""

    bounds: np.ndarray
    """W + 1 non-decreasing row numbers, from 0 to n (int64)."""

    @classmethod
    def of_sizes(cls, sizes: Sequence[int]) -> Blocks:
        """The blocks of these sizes, worker by worker."""
        if not sizes or min(sizes) < 0:
            raise ValueError(f"block sizes must be one non-negative size per worker, got {list(sizes)}")
        return cls(np.concatenate([[0], np.cumsum(np.asarray(sizes, np.int64))]).astype(np.int64))

    @classmethod
    def even(cls, n: int, workers: int) -> Blocks:
        """The blocks of :func:`slices`: sizes ⌈n/W⌉ first, then ⌊n/W⌋."""
        return cls.of_sizes([s.stop - s.start for s in slices(n, workers)])

    @classmethod
    def gather(cls, collective: Collective, step: str, rows: int) -> Blocks:
        """The blocks of every worker's ``rows``, from one all-gather (8 bytes to every other worker)."""
        sizes = collective.all_gather(step, [np.array([rows], np.int64)])
        return cls.of_sizes([int(s[0][0]) for s in sizes])

    @property
    def n(self) -> int:
        return int(self.bounds[-1])

    @property
    def workers(self) -> int:
        return len(self.bounds) - 1

    def rows(self, k: int) -> slice:
        """Worker k's rows."""
        return slice(int(self.bounds[k]), int(self.bounds[k + 1]))

    def size(self, k: int) -> int:
        return int(self.bounds[k + 1] - self.bounds[k])

    def owner(self, positions: np.ndarray) -> np.ndarray:
        """The worker holding each global row number (empty blocks own nothing)."""
        return np.searchsorted(self.bounds, positions, side="right") - 1


def _split(arrays: Sequence[np.ndarray], order: np.ndarray, counts: np.ndarray) -> list[list[np.ndarray]]:
    """Rows ``order`` of every array, cut into one part per worker of ``counts`` rows each."""
    cuts = np.cumsum(counts)[:-1]
    pieces = [np.split(np.take(a, order, axis=-1), cuts, axis=-1) for a in arrays]
    return [[p[j] for p in pieces] for j in range(len(counts))]


def _place(received: list[list[np.ndarray]], like: Sequence[np.ndarray], at: np.ndarray) -> list[np.ndarray]:
    """Array i of the result has, at ``at``, array i of every worker's part, in worker order."""
    out = []
    for i, a in enumerate(like):
        joined = np.concatenate([part[i] for part in received], axis=-1)
        placed = np.empty((*a.shape[:-1], len(at)), a.dtype)
        placed[..., at] = joined
        out.append(placed)
    return out


MAX_SHUFFLED_ROWS = 10**9 - 1
"""Rows a distributed shuffle moves at most: numpy's exact multivariate hypergeometric sampler
(:func:`transfer_counts`) takes populations below 10^9."""


def transfer_counts(generator: np.random.Generator, rows: Blocks, to: Blocks) -> np.ndarray:
    """How many rows a uniformly random permutation takes from each block of ``rows`` to each
    block of ``to``: a W×W int64 matrix (row k: from worker k), drawn from ``generator``.

    Its distribution is that of the counts of a uniform permutation of the n rows (the
    multivariate hypergeometric contingency table, Fisher's): worker k's rows are a sample
    without replacement of the output slots still free after workers 0 … k−1, so
    ``P(C) = ∏_k in_k! ∏_j out_j! / (n! ∏_kj C_kj!)``. Row sums are the sizes of ``rows``,
    column sums those of ``to``. O(W²) work. Raises ValueError if the blocks hold different n
    or more than :data:`MAX_SHUFFLED_ROWS` rows.
    """
    if rows.n != to.n or rows.workers != to.workers:
        raise ValueError(f"blocks {rows.bounds} and {to.bounds} must hold as many rows over as many workers")
    if rows.n > MAX_SHUFFLED_ROWS:
        raise ValueError(f"a distributed shuffle moves at most {MAX_SHUFFLED_ROWS} rows, got {rows.n}")
    free = np.diff(to.bounds)
    counts = np.zeros((rows.workers, to.workers), np.int64)
    for k in range(rows.workers):
        counts[k] = generator.multivariate_hypergeometric(free, rows.size(k))
        free -= counts[k]
    return counts


def permute_blocks(
    collective: Collective,
    step: str,
    arrays: Sequence[np.ndarray],
    counts: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
) -> list[np.ndarray]:
    """This worker's block of the n rows permuted by a random routing: O(n/W + W) work here.

    ``arrays`` are this worker's rows (the last axis). The permutation is
    given in three parts: ``before``, a permutation of this worker's rows;
    ``counts`` (W×W, :func:`transfer_counts`), after which the first
    ``counts[k, 0]`` of them go to worker 0, the next ``counts[k, 1]`` to
    worker 1, and so on; and ``after``, a permutation of the rows this
    worker receives, joined in sender order (``out = joined[..., after]``).
    If the parts are uniform (``counts`` distributed as a uniform
    permutation's, the local permutations uniform), so is the whole
    (:mod:`ipa.mpc.shuffle`), and every worker that is given the same parts
    applies the same permutation. One all-to-all at ``step``; only rows
    that change worker are sent.
    """
    k = collective.index
    if len(before) != (arrays[0].shape[-1] if arrays else 0) or len(after) != counts[:, k].sum():
        raise ValueError(f"worker {k}'s local permutations do not match its rows and counts")
    received = collective.all_to_all(step, _split(arrays, before, counts[k]))
    joined = (np.concatenate([part[i] for part in received], axis=-1) for i in range(len(arrays)))
    return [np.take(a, after, axis=-1) for a in joined]


def route(
    collective: Collective, step: str, arrays: Sequence[np.ndarray], positions: np.ndarray, to: Blocks
) -> list[np.ndarray]:
    """This worker's block (in ``to``) when each of its rows goes to global row ``positions[i]``.

    ``positions`` (this worker's rows only; over all workers a permutation of
    range(n)) are public to this helper: each row travels with its offset in
    the receiver's block (4 bytes), in one all-to-all at ``step``; only rows
    that change worker are sent. Raises ProtocolError if the rows that arrive
    do not fill this worker's block exactly once.
    """
    owners = to.owner(positions)
    order = np.argsort(owners, kind="stable")
    counts = np.bincount(owners, minlength=to.workers)
    offsets = (positions - to.bounds[owners]).astype(np.uint32)
    received = collective.all_to_all(step, _split([offsets, *arrays], order, counts))
    at = np.concatenate([part[0] for part in received]).astype(np.int64)
    size = to.size(collective.index)
    if len(at) != size or (size and np.bincount(at, minlength=size).max() != 1):
        raise ProtocolError(
            f"rows routed at collective step {step!r} do not fill worker {collective.index}'s block"
        )
    return _place([part[1:] for part in received], arrays, at)
