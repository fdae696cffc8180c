"""Reading a query's events on the command line: the same checks and messages in every command.

Errors name the file, its 1-based line (the header is line 1) and the flag
that would fix them; source events whose breakdown key no sum counts get a
warning on stderr with their count, never a silent drop.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ipa.attribution.config import QueryConfig
from ipa.errors import InputError
from ipa.events import Events, read_csv

__all__ = ["WIDTH_FLAGS", "check_widths", "read_query_events", "warn", "warn_dropped_keys"]

# Each event field's width and the flag that sets it.
WIDTH_FLAGS = {
    "timestamp": "--timestamp-bits",
    "match_key": "--match-key-bits",
    "breakdown_key": "--breakdown-bits",
    "trigger_value": "--value-bits",
    "constraint_id": "--constraint-bits",
}


def warn(text: str) -> None:
    """``ipa: warning: text`` on stderr (whether or not it is a terminal)."""
    print(f"ipa: warning: {text}", file=sys.stderr, flush=True)


def check_widths(events: Events, config: QueryConfig, name: str) -> None:
    """InputError naming the first CSV line whose field does not fit the query's width, and its flag.

    Every event's fields are checked, as the report collector does (a
    trigger's breakdown key too). The value itself is not printed (it may be
    a match key).
    """
    bits = config.field_bits()
    for field, flag in WIDTH_FLAGS.items():
        width = bits[field]
        if width >= 64:
            continue
        column = getattr(events, field).astype(np.uint64)
        bad = np.flatnonzero(column >> np.uint64(width))
        if len(bad):
            line = int(bad[0]) + 2
            raise InputError(
                f"{name} line {line}, field {field}: does not fit in {width} bits "
                f"({len(bad):,} events do not); raise {flag} (now {width})"
            )


def warn_dropped_keys(events: Events, num_breakdowns: int) -> int:
    """Warn on stderr about source events whose breakdown key is ≥ B; return their count.

    Such a source still takes its conversions (an older source never stands
    in for it) and uses its user's cap, but no sum counts them.
    """
    source = ~events.is_trigger
    dropped = source & (events.breakdown_key >= np.uint64(num_breakdowns))
    count = int(dropped.sum())
    if count:
        largest = int(events.breakdown_key[dropped].max())
        warn(
            f"{count:,} of {int(source.sum()):,} source events have a breakdown key ≥ --breakdowns "
            f"{num_breakdowns} (largest {largest}); their conversions count in no sum "
            f"(raise --breakdowns to {largest + 1} to see them)"
        )
    return count


def read_query_events(path: str | Path, config: QueryConfig) -> Events:
    """The events of ``path`` checked against ``config``'s widths; warns about dropped breakdown keys."""
    events = read_csv(path)
    check_widths(events, config, str(path))
    warn_dropped_keys(events, config.num_breakdowns)
    return events
