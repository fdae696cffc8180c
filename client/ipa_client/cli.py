"""The ``ipa`` command line: a thin dispatcher over one module per subcommand.

Each subcommand lives in ``ipa_client.commands.<name>`` and provides ``NAME``,
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; adding one is a
new module plus a line in ``_COMMANDS``. Errors the project raises on purpose
(:class:`~ipa.errors.IpaError`) and files that cannot be read or written print
``ipa: error: <message>`` to stderr and exit with status 2, as argparse does
for bad arguments: one status for every user error, and no traceback. A
failed check for a deviating helper (:class:`~ipa.errors.MaliciousBehaviourError`,
e.g. ``ipa simulate --security malicious --tamper``, or a query a helper
aborted for it) exits with status 3, ``ipa: error: ... malicious behaviour
detected: ...``: not a user error. Ctrl-C
exits with status 130 (a command that has something to undo, like ``ipa
query`` cancelling its query, does so first and says what it did).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Protocol

from ipa.errors import IpaError, MaliciousBehaviourError
from ipa_client.commands import budget, demo, fetch, gen_events, keygen, query, reference, simulate
from ipa_client.interrupt import EXIT_INTERRUPTED, exit_on_second_interrupt, leave_now

__all__ = ["EXIT_MALICIOUS", "build_parser", "main"]

EXIT_MALICIOUS = 3
"""The exit status when a check for a deviating helper failed (the query was aborted)."""


class _Command(Protocol):
    NAME: str
    HELP: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


_COMMANDS: tuple[_Command, ...] = (gen_events, keygen, reference, simulate, query, fetch, budget, demo)  # type: ignore[assignment]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ipa`` with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="ipa", description="Interoperable Private Attribution tools.")
    parser.add_argument("--version", action="version", version=f"ipa {_version()}")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        sub = subcommands.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def _version() -> str:
    try:
        return version("ipa")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _os_error(exc: OSError) -> str:
    """An OSError as ``FILE: reason`` (no errno number)."""
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename else reason


def _malicious(exc: IpaError) -> bool:
    """A check for a deviating helper failed: here, or at a helper (whose reason the error carries)."""
    return isinstance(exc, MaliciousBehaviourError) or "malicious behaviour detected" in str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ipa`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed usage or help
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.run(args)
    except IpaError as exc:
        print(f"ipa: error: {exc}", file=sys.stderr)
        return EXIT_MALICIOUS if _malicious(exc) else 2
    except OSError as exc:
        print(f"ipa: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        exit_on_second_interrupt()
        print("ipa: interrupted", file=sys.stderr)
        leave_now(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
