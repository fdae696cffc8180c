"""``ipa fetch``: the result of an earlier query, from its receipt.

``ipa fetch --network FILE --identity FILE --query-id ID [--state-dir DIR]`` reads the
receipt ``ipa query`` wrote (the collector's tokens), waits up to
``--timeout`` seconds for the helpers to have committed the query, and prints
its result like ``ipa query``: a table on a terminal, else (or with
``--json``) ``{"command": "fetch", "query_id": ..., "sums": [...]}``. The helpers keep a
committed result share on disk for their retention time, across restarts. A
failed (refunded) query exits with status 2 and the reason.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ipa_client import output
from ipa_client.commands._types import positive_float
from ipa_client.identity import load_identity
from ipa_client.query_client import QueryClient, endpoints
from ipa_client.receipts import default_state_dir, read_receipt

__all__ = ["HELP", "NAME", "add_arguments", "run"]

NAME = "fetch"
HELP = "fetch the result of an earlier query (from the receipt ipa query wrote)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--network", required=True, metavar="FILE", help="the network.toml of the helpers")
    parser.add_argument(
        "--identity",
        required=True,
        metavar="FILE",
        help="the report collector's identity that ran the query, DIR/collectors/NAME.toml",
    )
    parser.add_argument("--query-id", required=True, metavar="ID", help="the query's id")
    parser.add_argument(
        "--state-dir", type=Path, default=None, metavar="DIR", help="where ipa query wrote the receipt"
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=60.0,
        metavar="S",
        help="how long to wait for the helpers to finish the query (default 60)",
    )
    parser.add_argument("--insecure", action="store_true", help="no TLS: development helpers only")
    output.add_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    tokens = read_receipt(args.state_dir or default_state_dir(), args.query_id)
    identity = load_identity(args.identity)
    with QueryClient(endpoints(args.network), identity, insecure=args.insecure, tokens=tokens) as client:
        client.wait(args.query_id, deadline=args.timeout)
        sums = client.results(args.query_id)
    output.emit({"command": NAME, "query_id": args.query_id, "sums": sums.tolist()}, args)
    return 0
