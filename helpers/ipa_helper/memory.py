"""The in-memory implementation of the peer interface: three helpers in one process.

:class:`MemoryPeer` delivers a call straight into another
:class:`~ipa_helper.helper.Helper` object, with the checks the gRPC ``Peer``
servicer makes (only H1 prepares; an unknown query is refused; messages are
copied and read-only, as if they had crossed a wire). :class:`MemoryNetwork`
wires three helpers from their config files (real keys, real ledgers on disk)
and can stop and restart any of them, so lifecycle and fault tests run
in-process and deterministically, without TLS servers or processes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np

from ipa.dp.accounting import EpochBudget
from ipa.errors import IpaError, TransportError
from ipa.mpc.channel import Peer
from ipa.query import QuerySpec
from ipa_helper.config import HelperConfig
from ipa_helper.decode import make_decoder
from ipa_helper.helper import Halted, Helper
from ipa_helper.ledger import BudgetLedger
from ipa_helper.limits import LimitError
from ipa_helper.peers import PeerLink, RefusedError
from ipa_helper.queries import UnknownQueryError

__all__ = ["Crash", "MemoryNetwork", "MemoryPeer"]


Crash = Halted  # raise it from a fault point to end a helper's thread there, without any cleanup


class MemoryPeer(PeerLink):
    """Neighbour ``index`` of party ``sender``, reached by calling its Helper (None: it is down)."""

    def __init__(self, lookup: Callable[[], Helper | None], index: int, sender: int) -> None:
        self.index = index
        self._lookup = lookup
        self._sender = sender

    def _target(self) -> Helper:
        helper = self._lookup()
        if helper is None:
            raise TransportError(f"H{self.index + 1} is unreachable")
        return helper

    def prepare(self, query_id: str, spec: QuerySpec, token_hash: bytes) -> None:
        target = self._target()
        if self._sender != 0:
            raise RefusedError("caller is not one of this helper's peers")
        try:
            target.prepare(query_id, spec, token_hash)
        except LimitError:
            raise  # over one of the peer's limits: the leader says so, as the gRPC peer does
        except IpaError as exc:
            raise RefusedError(str(exc)) from None

    def abort(self, query_id: str, reason: str) -> None:
        helper = self._lookup()
        if helper is None:
            return
        with contextlib.suppress(UnknownQueryError):
            helper.abort_from_peer(query_id, self._sender, reason)

    def send(self, query_id: str, step: str, sender: int, arrays: list[np.ndarray]) -> None:
        target = self._target()
        try:
            target.receive_message(query_id, sender, step, [_wire_copy(a) for a in arrays])
        except IpaError as exc:
            raise TransportError(f"sending step {step!r} to H{self.index + 1} failed: {exc}") from None

    def outcome(self, query_id: str) -> str:
        return self._target().outcome(query_id)


def _wire_copy(a: np.ndarray) -> np.ndarray:
    copy = np.array(a, copy=True)
    copy.flags.writeable = False
    return copy


class MemoryNetwork:
    """Three helpers of one process joined by :class:`MemoryPeer` links.

    ``helpers[i]`` is None while helper i is stopped; its links then fail like
    a dead peer's. ``start(i)`` builds it again from its config and data
    directory, recovering its ledger as ``ipa-helper`` does at start-up.
    """

    def __init__(self, configs: Sequence[HelperConfig]) -> None:
        if [c.index for c in configs] != [1, 2, 3]:
            raise IpaError("a memory network needs the configs of H1, H2 and H3, in order")
        self.configs = list(configs)
        self.helpers: list[Helper | None] = [None, None, None]
        for party in range(3):
            self.start(party)

    def helper(self, party: int) -> Helper:
        """Helper ``party`` (0, 1, 2); IpaError if it is stopped."""
        helper = self.helpers[party]
        if helper is None:
            raise IpaError(f"H{party + 1} is stopped")
        return helper

    def start(self, party: int, fault: Callable[[str], None] | None = None) -> Helper:
        """Start helper ``party`` as ``ipa-helper`` does: recover its ledger, take back its queries."""
        config = self.configs[party]
        budget = EpochBudget.of(config.epoch_budget, config.delta)
        ledger = BudgetLedger(config.data_dir / "budget.sqlite", budget.units, budget.describe)
        ledger.recover()
        links: dict[Peer, PeerLink] = {
            p: MemoryPeer(self._lookup(p.of(party)), p.of(party), party) for p in Peer
        }
        helper = Helper(config, links, make_decoder(config), ledger, fault=fault)
        self.helpers[party] = helper
        helper.restore()
        return helper

    def crash(self, party: int) -> None:
        """Helper ``party`` is gone at once, as after ``kill -9``: no cleanup, only what is on disk stays.

        Its links fail from now on; its threads are told to stop (a test crashes a
        worker by raising :class:`Crash` from a fault point).
        """
        helper = self.helper(party)
        self.helpers[party] = None
        helper.halt()

    def stop(self, party: int) -> None:
        """Shut helper ``party`` down as SIGTERM would (its running queries fail and tell the peers)."""
        helper = self.helper(party)
        helper.shut_down()
        self.helpers[party] = None
        helper.ledger.close()

    def close(self) -> None:
        """Stop all three: first cut every link, then shut each down and close its ledger."""
        running = [h for h in self.helpers if h is not None]
        self.helpers = [None, None, None]
        for helper in running:
            helper.shut_down()
        for helper in running:
            helper.ledger.close()

    def _lookup(self, party: int) -> Callable[[], Helper | None]:
        return lambda: self.helpers[party]
