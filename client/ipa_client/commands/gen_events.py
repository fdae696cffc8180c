"""``ipa gen-events``: write a synthetic event CSV (model in ``ipa.synthetic``).

By default the events are multi-site: sources on three publishers, triggers
on two advertisers (``ipa.synthetic.PUBLISHERS`` and ``ADVERTISERS``), people
on up to three devices, half of them with a provider's match key shared by
their devices. ``--single-site`` writes the one-site, one-device model (no
``site`` column). Prints one JSON object on stdout: ``{"out": path, "rows":
n, "sources": s, "triggers": t, "users": u, "sites": {site: rows, ...}}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from ipa.errors import InputError
from ipa.events import write_csv
from ipa.synthetic import ADVERTISERS, PUBLISHERS, generate
from ipa_client.commands._types import int_in, non_negative_int

__all__ = ["HELP", "NAME", "add_arguments", "run"]

_MULTI_SITE: dict[str, Any] = {"publishers": PUBLISHERS, "advertisers": ADVERTISERS, "max_devices": 3}

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
        type=int_in(1, 256),
        default=16,
        metavar="B",
        help="source breakdown keys are in [0, B), B ≤ 256 (default: 16)",
    )
    parser.add_argument(
        "--constraint-ids",
        type=int_in(1, 256),
        default=4,
        metavar="C",
        help="constraint ids are in [0, C), C ≤ 256 (default: 4)",
    )
    parser.add_argument(
        "--single-site",
        action="store_true",
        help="one site and one device per person (no site column)",
    )


def run(args: argparse.Namespace) -> int:
    """Generate and write the events; return 0."""
    directory = Path(args.out).parent
    if not directory.is_dir():  # before minutes of generating
        raise InputError(f"--out {args.out}: directory {directory} does not exist")
    events = generate(
        args.events,
        seed=args.seed,
        num_breakdowns=args.breakdowns,
        num_constraint_ids=args.constraint_ids,
        **({} if args.single_site else _MULTI_SITE),
    )
    write_csv(events, args.out)
    triggers = int(events.is_trigger.sum())
    summary = {
        "out": args.out,
        "rows": len(events),
        "sources": len(events) - triggers,
        "triggers": triggers,
        "users": len(np.unique(events.match_key)),
        "sites": _site_counts(events.site),
    }
    print(json.dumps(summary))
    return 0


def _site_counts(site: np.ndarray) -> dict[str, int]:
    names, counts = np.unique(site, return_counts=True)
    return {str(k): int(v) for k, v in zip(names, counts, strict=True) if k}
