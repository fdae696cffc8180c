"""``ipa reference``: the exact in-the-clear answer of a query (``ipa.reference``).

``--site Q --query-type source|trigger`` name the querying site and the
query type; a report on the querying side made on another site is
neutralised (``ipa.reference``, rule 0), as the MPC does.

Takes the same query parameters and widths, with the same limits, as
``ipa simulate`` and ``ipa query``. Prints a table on a terminal, else (or
with ``--json``) one JSON object: ``{"command": "reference", "rows": n,
"sums": [s_0, ..., s_{B-1}]}`` (the result schema of ``ipa_client.output``).
"""

from __future__ import annotations

import argparse

from ipa.reference import attribute_query
from ipa_client import output
from ipa_client.commands._input import read_query_events
from ipa_client.commands._query_args import (
    add_query_arguments,
    add_site_arguments,
    add_width_arguments,
    config_from_args,
)

__all__ = ["HELP", "NAME", "add_arguments", "run"]

NAME = "reference"
HELP = "compute attribution sums in the clear from an event CSV file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the input file, the query parameters, the site and query type, the widths, the output."""
    add_query_arguments(parser)
    add_site_arguments(parser, required=False)
    add_width_arguments(parser)
    output.add_output_arguments(parser, chart=False)


def run(args: argparse.Namespace) -> int:
    """Read the events, attribute, print the result; return 0."""
    config = config_from_args(args)
    events = read_query_events(args.input, config)
    sums = attribute_query(events, config, args.site)
    output.emit({"command": NAME, "rows": len(events), "sums": sums.tolist()}, args)
    return 0
