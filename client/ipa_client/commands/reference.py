"""``ipa reference``: the exact in-the-clear answer of a query (``ipa.reference``).

``--site Q --query-type source|trigger`` name the querying site and the
query type; a report on the querying side made on another site is
neutralised (``ipa.reference``, rule 0), as the MPC does.

Prints one JSON object on stdout: ``{"rows": n, "sums": [s_0, ..., s_{B-1}]}``.
"""

from __future__ import annotations

import argparse
import json

from ipa.events import read_csv
from ipa.reference import attribute
from ipa_client.commands._query_args import add_query_arguments, add_site_arguments

__all__ = ["HELP", "NAME", "add_arguments", "run"]

NAME = "reference"
HELP = "compute attribution sums in the clear from an event CSV file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the input file, the query parameters, the querying site and the query type."""
    add_query_arguments(parser)
    add_site_arguments(parser, required=False)


def run(args: argparse.Namespace) -> int:
    """Read the events, attribute, print the JSON result; return 0."""
    events = read_csv(args.input)
    sums = attribute(
        events,
        num_breakdowns=args.breakdowns,
        cap=args.cap,
        window=args.window,
        max_events_per_user=args.max_events_per_user,
        site=args.site,
        query_type=args.query_type,
    )
    print(json.dumps({"rows": len(events), "sums": sums.tolist()}))
    return 0
