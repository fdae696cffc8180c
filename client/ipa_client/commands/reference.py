"""``ipa reference``: the exact in-the-clear answer of a query (``ipa.reference``).

Prints one JSON object on stdout: ``{"rows": n, "sums": [s_0, ..., s_{B-1}]}``.
"""

from __future__ import annotations

import argparse
import json

from ipa.events import read_csv
from ipa.reference import attribute
from ipa_client.commands._types import non_negative_int, positive_int

__all__ = ["HELP", "NAME", "add_arguments", "run"]

NAME = "reference"
HELP = "compute attribution sums in the clear from an event CSV file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the input file and the query parameters."""
    parser.add_argument("--input", required=True, metavar="FILE", help="the event CSV file")
    parser.add_argument(
        "--breakdowns",
        type=positive_int,
        required=True,
        metavar="B",
        help="report sums for breakdown keys [0, B)",
    )
    parser.add_argument(
        "--cap",
        type=non_negative_int,
        required=True,
        metavar="C",
        help="per-user cap on the sum of attributed values",
    )
    parser.add_argument(
        "--window",
        type=non_negative_int,
        default=None,
        metavar="W",
        help="attribution window in timestamp units (default: none)",
    )
    parser.add_argument(
        "--max-events-per-user",
        type=positive_int,
        default=64,
        metavar="K",
        help="look-back bound, a power of two (default: 64)",
    )


def run(args: argparse.Namespace) -> int:
    """Read the events, attribute, print the JSON result; return 0."""
    events = read_csv(args.input)
    sums = attribute(
        events,
        num_breakdowns=args.breakdowns,
        cap=args.cap,
        window=args.window,
        max_events_per_user=args.max_events_per_user,
    )
    print(json.dumps({"rows": len(events), "sums": sums.tolist()}))
    return 0
