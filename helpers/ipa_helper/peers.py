"""What the query lifecycle needs from the two other helpers: the peer interface.

A :class:`PeerLink` is one neighbour as :class:`~ipa_helper.helper.Helper`
sees it: prepare a query there, abort it there, deliver one MPC message
there, ask what it has recorded about a query's end. Two implementations:

- :class:`ipa_helper.transport.GrpcPeer`: the ``Peer`` service over mutual TLS
  (what ``ipa-helper`` uses);
- :class:`ipa_helper.memory.MemoryPeer`: a direct call into another
  :class:`~ipa_helper.helper.Helper` of this process, so the lifecycle's rules
  are tested in-process, deterministically, in milliseconds.

:class:`PeerChannel` is the MPC channel (``ipa.mpc.channel``) of one query
over the two links: a send is one ``PeerLink.send``; a receive waits in this
helper's :class:`~ipa_helper.mailbox.Mailbox`, where the peer's link put it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from ipa.errors import IpaError, TransportError
from ipa.mpc.channel import Channel, Peer
from ipa.query import QuerySpec
from ipa_helper.mailbox import Mailbox

__all__ = ["MessageHook", "PeerChannel", "PeerLink", "RefusedError", "UnreachableError"]


class RefusedError(IpaError):
    """A peer refused to prepare a query; the message is the peer's reason."""


class UnreachableError(TransportError):
    """A peer could not be reached (down, another certificate, silent); the message says why."""


class PeerLink(ABC):
    """One neighbour of this helper, as the query lifecycle talks to it.

    Every call has a deadline. ``prepare`` raises :class:`RefusedError` with the
    peer's reason when it refuses, :class:`~ipa_helper.limits.LimitError` when
    the query exceeds one of the peer's limits, and :class:`UnreachableError`
    (a TransportError) saying why when it cannot be reached; ``send`` raises
    TransportError; ``abort`` never raises (a dead peer times out on its own).
    """

    index: int  # the neighbour's 0-based party index

    @abstractmethod
    def prepare(self, query_id: str, spec: QuerySpec, token_hash: bytes) -> None:
        """Ask the peer to check and register the query (leader only)."""

    @abstractmethod
    def abort(self, query_id: str, reason: str) -> None:
        """Tell the peer the query has ended here with ``reason`` (best effort)."""

    @abstractmethod
    def send(self, query_id: str, step: str, sender: int, arrays: list[np.ndarray]) -> None:
        """Deliver one MPC message into the peer's mailbox."""

    @abstractmethod
    def outcome(self, query_id: str) -> str:
        """The query's durable outcome at the peer: open, ready, committed, aborted or unknown.

        TransportError if the peer cannot be reached.
        """


MessageHook = Callable[[str, list[np.ndarray]], list[np.ndarray]]
"""Tests only (``IPA_TAMPER=message:STEP``): what a helper sends at a step, given what it should send."""


class PeerChannel(Channel):
    """The MPC channel of one party in one query, over links to its two neighbours.

    ``alter`` (tests only) may replace a message before it leaves: a corrupt helper.
    """

    def __init__(
        self,
        party: int,
        query_id: str,
        links: dict[Peer, PeerLink],
        mailbox: Mailbox,
        timeout: float,
        alter: MessageHook | None = None,
    ) -> None:
        super().__init__(party)
        self._query_id = query_id
        self._links = links
        self._mailbox = mailbox
        self._timeout = timeout
        self._alter = alter

    def _deliver(self, step: str, to: Peer, arrays: list[np.ndarray]) -> None:
        if self._alter is not None:
            arrays = self._alter(step, arrays)
        self._links[to].send(self._query_id, step, self.party, arrays)

    def _collect(self, step: str, frm: Peer) -> list[np.ndarray]:
        return self._mailbox.take(self._query_id, frm.of(self.party), step, self._timeout)
