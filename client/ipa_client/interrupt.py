"""Ctrl-C while a query runs: cancel it at the helpers, say so in one line, exit 130.

The first Ctrl-C raises KeyboardInterrupt in the command, which calls
:func:`cancel_on_interrupt`: from then on a second Ctrl-C ends the process
at once (status 130), while the cancel (a few seconds at most) tells every
helper to end the query. A helper refunds the query's ε where nothing was
released; a query that had already completed stays spent and its result
stays with the helpers.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from ipa_client.query_client import QueryClient
from ipa_rpc.v1 import query_pb2

__all__ = [
    "CANCEL_SECONDS",
    "EXIT_INTERRUPTED",
    "cancel_on_interrupt",
    "exit_on_second_interrupt",
    "leave_now",
]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a process ended by Ctrl-C
CANCEL_SECONDS = 5.0  # how long each helper gets to answer the cancel


def exit_on_second_interrupt() -> None:
    """From now on Ctrl-C ends the process at once, with status 130."""
    signal.signal(signal.SIGINT, lambda *_: os._exit(EXIT_INTERRUPTED))


def _say(text: str) -> None:
    print(f"ipa: {text}", file=sys.stderr, flush=True)


def cancel_on_interrupt(client: QueryClient | None, query_id: str | None) -> int:
    """Cancel ``query_id`` (if there is one) at the helpers, print one line, return 130."""
    exit_on_second_interrupt()
    if client is None or query_id is None:
        _say("interrupted before any query was created; nothing was spent")
        return EXIT_INTERRUPTED
    statuses = client.cancel(query_id, timeout=CANCEL_SECONDS)
    silent = [f"H{h + 1}" for h, s in enumerate(statuses) if s is None]
    if any(s is not None and s.state == query_pb2.COMPLETED for s in statuses):
        _say(f"interrupted: query {query_id} had already completed; its ε is spent")
    elif silent:
        _say(f"interrupted: query {query_id} cancelled; {', '.join(silent)} did not answer the cancel")
    else:
        _say(f"interrupted: query {query_id} cancelled at H1, H2, H3 before any release; its ε is refunded")
    return EXIT_INTERRUPTED


def leave_now(status: int) -> None:
    """End the process with ``status`` now if worker threads are still running, else return.

    An interrupted in-memory run (``ipa simulate``) leaves its three party
    threads computing; the interpreter would wait for them at exit.
    """
    lingering = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if lingering:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
