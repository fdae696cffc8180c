"""The query parameters every query-running subcommand takes, and the config they make.

``reference``, ``simulate`` and ``query`` take the same parameters with the
same limits (stated in ``--help``): the in-the-clear answer is defined for
exactly the queries the MPC can run.
"""

from __future__ import annotations

import argparse
import re

from ipa.attribution.config import QueryConfig, QueryType
from ipa.errors import InputError
from ipa_client.commands._types import non_negative_int, positive_int, power_of_two

__all__ = [
    "MAX_EVENTS_PER_USER",
    "add_query_arguments",
    "add_site_arguments",
    "add_width_arguments",
    "config_from_args",
]

MAX_EVENTS_PER_USER = 1 << 20

_WIDTHS = {
    "match_key_bits": "match key",
    "timestamp_bits": "timestamp",
    "breakdown_bits": "breakdown key",
    "value_bits": "trigger value",
    "constraint_bits": "constraint id",
}

# QueryConfig's field names, as the flags that set them (for its error messages).
_FLAGS = {
    "num_breakdowns": "--breakdowns",
    "max_events_per_user": "--max-events-per-user",
    "cap": "--cap",
    "window": "--window",
    **{field: "--" + field.replace("_", "-") for field in _WIDTHS},
}
_FIELD_NAMES = re.compile(r"\b(" + "|".join(_FLAGS) + r")\b")


def add_query_arguments(parser: argparse.ArgumentParser) -> None:
    """Register --input, --breakdowns, --cap, --window and --max-events-per-user."""
    defaults = QueryConfig(num_breakdowns=1, cap=0)
    parser.add_argument("--input", required=True, metavar="FILE", help="the event CSV file")
    parser.add_argument(
        "--breakdowns",
        type=positive_int,
        required=True,
        metavar="B",
        help="report sums for breakdown keys [0, B); B ≤ 2^--breakdown-bits "
        f"({1 << defaults.breakdown_bits} by default); a source with a key ≥ B counts in no sum (warned)",
    )
    parser.add_argument(
        "--cap",
        type=non_negative_int,
        required=True,
        metavar="C",
        help="per-user cap on the sum of attributed values, in trigger-value units (C < 2^62)",
    )
    parser.add_argument(
        "--window",
        type=non_negative_int,
        default=None,
        metavar="W",
        help="attribution window in timestamp units, seconds for ipa gen-events data "
        "(W < 2^--timestamp-bits; default: none)",
    )
    parser.add_argument(
        "--max-events-per-user",
        type=power_of_two,
        default=defaults.max_events_per_user,
        metavar="K",
        help=f"look-back bound, a power of two ≤ 2^20 (default: {defaults.max_events_per_user})",
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
    """Register the column bit widths of a query (defaults from QueryConfig)."""
    defaults = QueryConfig(num_breakdowns=1, cap=0)
    for field, what in _WIDTHS.items():
        limit = "32" if field == "value_bits" else "64"
        parser.add_argument(
            "--" + field.replace("_", "-"),
            type=positive_int,
            default=getattr(defaults, field),
            metavar="BITS",
            help=f"bit width of the {what}, ≤ {limit} (default: {getattr(defaults, field)})",
        )


def config_from_args(args: argparse.Namespace) -> QueryConfig:
    """The QueryConfig the parsed arguments describe; InputError naming the flags if inconsistent."""
    limit = 1 << min(args.breakdown_bits, 62)
    if args.breakdowns > limit:
        raise InputError(
            f"--breakdowns must be at most {limit} with --breakdown-bits {args.breakdown_bits}, "
            f"got {args.breakdowns}; raise --breakdown-bits"
        )
    if args.max_events_per_user > MAX_EVENTS_PER_USER:
        raise InputError(f"--max-events-per-user must be at most 2^20, got {args.max_events_per_user}")
    try:
        return QueryConfig(
            num_breakdowns=args.breakdowns,
            cap=args.cap,
            window=args.window,
            max_events_per_user=args.max_events_per_user,
            query_type=getattr(args, "query_type", QueryType.SOURCE),
            **{field: getattr(args, field) for field in _WIDTHS},
        )
    except InputError as exc:
        raise InputError(_FIELD_NAMES.sub(lambda m: _FLAGS[m.group(1)], str(exc))) from None
