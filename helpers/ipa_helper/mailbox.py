"""Where MPC messages from peers wait until the local protocol asks for them.

The ``Peer.Send`` servicer stores each complete message under
(query id, sender, step) and returns at once; :class:`~ipa_helper.transport.GrpcChannel`
takes it out. Ending a query (failure, cancel or completion) wakes every receiver still
waiting on it and drops its messages, including any that arrive later.

A worker of a helper keeps two: its triple's (senders are the peer helpers'
workers, ``ipa_helper.triples``) and its helper group's (senders are the other
workers of its own helper, ``ipa_helper.siblings``).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable

import numpy as np

from ipa.errors import TransportError

__all__ = ["Mailbox"]


def _helper_name(sender: int) -> str:
    return f"H{sender + 1}"


class Mailbox:
    """Messages of all running queries in one helper, keyed by (query id, sender, step).

    ``sender_name`` names a sender in errors (``H2``, or ``worker w1``).
    ``remember``: keep the end markers of at most that many ended queries,
    forgetting the oldest (None: until :meth:`forget`).
    """

    def __init__(self, sender_name: Callable[[int], str] = _helper_name, remember: int | None = None) -> None:
        self._messages: dict[tuple[str, int, str], list[np.ndarray]] = {}
        self._aborted: dict[str, str] = {}
        self._ended: collections.deque[str] = collections.deque()
        self._remember = remember
        self._name = sender_name
        self._cond = threading.Condition()

    def put(self, query_id: str, sender: int, step: str, arrays: list[np.ndarray]) -> None:
        """Store one message (dropped if the query has ended); a duplicate is a TransportError."""
        key = (query_id, sender, step)
        with self._cond:
            if query_id in self._aborted:
                return
            if key in self._messages:
                raise TransportError(f"duplicate message for step {step!r} from {self._name(sender)}")
            self._messages[key] = arrays
            self._cond.notify_all()

    def take(self, query_id: str, sender: int, step: str, timeout: float) -> list[np.ndarray]:
        """Wait for and remove one message; TransportError on timeout or abort."""
        key = (query_id, sender, step)
        with self._cond:
            self._cond.wait_for(lambda: key in self._messages or query_id in self._aborted, timeout)
            if query_id in self._aborted:
                raise TransportError(f"query aborted: {self._aborted[query_id]}")
            if key in self._messages:
                return self._messages.pop(key)
        raise TransportError(f"no message at step {step!r} from {self._name(sender)} within {timeout:g} s")

    def aborted(self, query_id: str) -> str | None:
        """Why ``query_id`` has ended here, or None while it runs."""
        with self._cond:
            return self._aborted.get(query_id)

    def forget(self, query_ids: list[str]) -> None:
        """Drop the end markers of long-ended queries (their ids are unknown to the helper now)."""
        with self._cond:
            for query_id in query_ids:
                self._aborted.pop(query_id, None)

    def abort(self, query_id: str, reason: str) -> None:
        """End ``query_id``: wake its receivers with ``reason``, drop its messages now and later."""
        with self._cond:
            if query_id not in self._aborted and self._remember is not None:
                self._ended.append(query_id)
                while len(self._ended) > self._remember:
                    self._aborted.pop(self._ended.popleft(), None)
            self._aborted.setdefault(query_id, reason)
            for key in [k for k in self._messages if k[0] == query_id]:
                del self._messages[key]
            self._cond.notify_all()
