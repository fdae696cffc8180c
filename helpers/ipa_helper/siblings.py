"""The W workers of one helper exchanging rows through Ray: a helper's ``ipa.mpc.collective.Collective``.

A distributed protocol (the sort) moves rows between the W workers of one
helper (``docs/scaling.md``). Here those moves go actor to actor: worker k's
:meth:`RayCollective._deliver` calls ``deliver`` on sibling actor ``to``
(:class:`ipa_helper.cluster.IpaWorker`), handing it the numpy arrays through
Ray's object store, and returns without waiting for the receiver; the
receiver's actor method puts the message into that worker's *group mailbox*
(a :class:`~ipa_helper.mailbox.Mailbox` of its own, apart from its triple's,
keyed by query id, sending worker and step), where
:meth:`RayCollective._collect` takes it. Nothing crosses the coordinator,
and nothing leaves the helper's Ray cluster: the siblings are the helper's
own actors, which the coordinator hands each worker with its part
(:class:`Group`).

A receiver waits at most the query's timeout. It wakes at once when its query
ends here (the coordinator calls the worker's ``abort``, which ends the query
in both of its mailboxes), and within :data:`PROBE_SECONDS` when the sibling
it waits for has died or was restarted by Ray (a restarted actor has another
pid and none of the query): it asks that sibling's pid while it waits, and
watches its own deliveries, whose failure says the same.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ipa.errors import TransportError
from ipa.mpc.collective import Collective
from ipa.mpc.prss import PRSS
from ipa_helper.mailbox import Mailbox

__all__ = ["PROBE_SECONDS", "Group", "RayCollective", "group_mailbox", "worker_failure"]

PROBE_SECONDS = 0.5
"""How often a waiting worker checks that the sibling it waits for still runs its part."""


@dataclass(frozen=True)
class Group:
    """What worker ``index`` of helper ``party`` needs to exchange rows with its siblings in a query."""

    party: int
    index: int
    actors: tuple[Any, ...]
    """The helper's W worker actors (Ray handles), by worker index; this worker's own among them."""
    pids: tuple[int, ...]
    """Each worker's process id when the coordinator handed out the parts (a restart changes it)."""
    seeds: tuple[bytes, bytes] = field(repr=False)
    """The helper group's PRSS seeds (prev, next): ``HMAC(seed, "workers")`` of the query's."""

    @property
    def size(self) -> int:
        return len(self.actors)

    def name(self, k: int) -> str:
        return f"H{self.party + 1}'s worker w{k} (pid {self.pids[k]})"


def group_mailbox() -> Mailbox:
    """A worker's mailbox for its siblings' messages (senders named ``worker w<k>``)."""
    return Mailbox(lambda s: f"worker w{s}", remember=256)


class RayCollective(Collective):
    """Worker ``group.index``'s exchanges with its siblings in query ``query_id``, actor to actor."""

    def __init__(self, query_id: str, group: Group, mailbox: Mailbox, timeout: float) -> None:
        import ray  # only inside a worker actor: the helper imports Ray only with workers

        super().__init__(group.index, group.size, PRSS(*group.seeds))
        self._ray = ray
        self.query_id, self.group, self.timeout = query_id, group, timeout
        self._mailbox = mailbox
        self.received_bytes = 0
        """Bytes of the messages this worker took from its siblings (``stats`` counts those it sent)."""
        self._sent: list[tuple[int, str, Any]] = []  # (to, step, ref) of deliveries not yet seen done
        self._probes: dict[int, Any] = {}
        self._pending = threading.Lock()

    def _deliver(self, step: str, to: int, arrays: list[np.ndarray]) -> None:
        ref = self.group.actors[to].deliver.remote(self.query_id, self.index, step, arrays)
        with self._pending:
            self._sent.append((to, step, ref))

    def _collect(self, step: str, frm: int) -> list[np.ndarray]:
        deadline = time.monotonic() + self.timeout
        while True:
            wait = min(PROBE_SECONDS, max(deadline - time.monotonic(), 0.0))
            try:
                arrays = self._mailbox.take(self.query_id, frm, step, wait)
                self.received_bytes += sum(a.nbytes for a in arrays)
                return arrays
            except TransportError:
                if self._mailbox.aborted(self.query_id) is not None:
                    raise
            if time.monotonic() >= deadline:
                raise TransportError(
                    f"no message at collective step {step!r} from {self.group.name(frm)} "
                    f"within {self.timeout:g} s"
                )
            self._check_deliveries()
            self._probe(frm)

    def _check_deliveries(self) -> None:
        """TransportError if a message this worker sent could not be delivered (its receiver died)."""
        with self._pending:
            sent, self._sent = self._sent, []
        refs = [ref for _, _, ref in sent]
        done = set(self._ray.wait(refs, num_returns=len(refs), timeout=0)[0]) if refs else set()
        with self._pending:
            self._sent += [s for s in sent if s[2] not in done]
        for to, step, ref in sent:
            if ref in done:
                try:
                    self._ray.get(ref)
                except TransportError as exc:  # raised by the receiver (Ray's error is also of its type)
                    raise TransportError(f"{self.group.name(to)} refused a message: {exc}") from None
                except self._ray.exceptions.RayError as exc:
                    raise TransportError(
                        f"the message at collective step {step!r} to {self.group.name(to)} was not "
                        f"delivered: {worker_failure(exc)}"
                    ) from None

    def _probe(self, k: int) -> None:
        """TransportError if worker ``k`` died or was restarted (its pid, asked now, is read next time)."""
        probe = self._probes.pop(k, None)
        if probe is None:
            self._probes[k] = self.group.actors[k].pid.remote()
            return
        if not self._ray.wait([probe], timeout=0)[0]:
            self._probes[k] = probe  # still on its way (the sibling is busy or stopped): ask again later
            return
        try:
            pid = int(self._ray.get(probe))
        except self._ray.exceptions.RayError as exc:
            raise TransportError(f"{self.group.name(k)} is gone: {worker_failure(exc)}") from None
        if pid != self.group.pids[k]:
            raise TransportError(
                f"{self.group.name(k)} died and was restarted as pid {pid}: its part is lost"
            )


def worker_failure(exc: Exception) -> str:
    """Why a call to a worker actor failed, in words (Ray's exception names otherwise)."""
    name = type(exc).__name__
    if "Died" in name or "ActorError" in name or "Unavailable" in name:
        return "the worker process died"
    return name
