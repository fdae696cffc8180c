"""The query parameters every query-running subcommand takes, and the config they make."""

from __future__ import annotations

import argparse

from ipa.attribution.config import QueryConfig, QueryType
from ipa_client.commands._types import non_negative_int, positive_int

__all__ = ["add_query_arguments", "add_site_arguments", "add_width_arguments", "config_from_args"]

_WIDTHS = {
    "match_key_bits": "match key",
    "timestamp_bits": "timestamp",
    "breakdown_bits": "breakdown key",
    "value_bits": "trigger value",
    "constraint_bits": "constraint id",
}


def add_query_arguments(parser: argparse.ArgumentParser) -> None:
    """Register --input, --breakdowns, --cap, --window and --max-events-per-user."""
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


def add_site_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """Register --site (the querying site) and --query-type (source or trigger fanout)."""
    parser.add_argument(
        "--site",
        required=required,
        default=None,
        metavar="Q",
        help="the querying site: events without a site column (or with an empty one) are on it"
        + ("" if required else " (needed when the events name sites)"),
    )
    parser.add_argument(
        "--query-type",
        choices=[t.value for t in QueryType],
        default=QueryType.SOURCE.value,
        help="source: Q's sources, triggers from any site; trigger: the mirror image (default: source)",
    )


def add_width_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the column bit widths of an MPC query (defaults from QueryConfig)."""
    defaults = QueryConfig(num_breakdowns=1, cap=0)
    for field, what in _WIDTHS.items():
        parser.add_argument(
            "--" + field.replace("_", "-"),
            type=positive_int,
            default=getattr(defaults, field),
            metavar="BITS",
            help=f"bit width of the {what} (default: {getattr(defaults, field)})",
        )


def config_from_args(args: argparse.Namespace) -> QueryConfig:
    """The QueryConfig the parsed arguments describe (InputError if inconsistent)."""
    return QueryConfig(
        num_breakdowns=args.breakdowns,
        cap=args.cap,
        window=args.window,
        max_events_per_user=args.max_events_per_user,
        query_type=getattr(args, "query_type", QueryType.SOURCE),
        **{field: getattr(args, field) for field in _WIDTHS},
    )
