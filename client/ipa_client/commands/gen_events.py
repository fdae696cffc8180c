"""``ipa gen-events``: write a synthetic event CSV (model in ``ipa.synthetic``).

Prints one JSON object on stdout: ``{"out": path, "rows": n, "sources": s,
"triggers": t, "users": u}``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from ipa.events import write_csv
from ipa.synthetic import generate
from ipa_client.commands._types import non_negative_int, positive_int

__all__ = ["HELP", "NAME", "add_arguments", "run"]

NAME = "gen-events"
HELP = "write a synthetic event CSV file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--events``, ``--seed``, ``--out``, ``--breakdowns``, ``--constraint-ids``."""
    parser.add_argument(
        "--events",
        type=non_negative_int,
        required=True,
        metavar="N",
        help="number of events (rows) to write",
    )
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        required=True,
        metavar="S",
        help="random seed; the same seed gives the same file",
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="the CSV file to write")
    parser.add_argument(
        "--breakdowns",
        type=positive_int,
        default=16,
        metavar="B",
        help="source breakdown keys are in [0, B) (default: 16)",
    )
    parser.add_argument(
        "--constraint-ids",
        type=positive_int,
        default=4,
        metavar="C",
        help="constraint ids are in [0, C) (default: 4)",
    )


def run(args: argparse.Namespace) -> int:
    """Generate and write the events; return 0."""
    events = generate(
        args.events,
        seed=args.seed,
        num_breakdowns=args.breakdowns,
        num_constraint_ids=args.constraint_ids,
    )
    write_csv(events, args.out)
    triggers = int(events.is_trigger.sum())
    summary = {
        "out": args.out,
        "rows": len(events),
        "sources": len(events) - triggers,
        "triggers": triggers,
        "users": len(np.unique(events.match_key)),
    }
    print(json.dumps(summary))
    return 0
