"""Three-party helpers for the attribution tests: run a protocol or a whole query, open the result.

Named ``three_party`` (not ``harness``) so that it does not clash with
``tests/mpc/harness.py`` under pytest's default ``prepend`` import mode.
"""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ipa.attribution.config import QueryConfig
from ipa.attribution.pipeline import NoiseHook, QueryResult, no_noise, run_query
from ipa.attribution.rows import share_events
from ipa.events import COLUMNS, Events
from ipa.mpc.memory import RunResult, run_three
from ipa.mpc.sharing import reconstruct


def run(protocol: Callable[..., Any], *shared: Sequence[Any]) -> RunResult:
    """Run ``protocol(ctx, *shares_of_party)`` on all three parties."""
    return run_three(lambda ctx, args: protocol(ctx, *args), [tuple(s[i] for s in shared) for i in range(3)])


def opened(result: RunResult) -> np.ndarray | list[np.ndarray]:
    """Reconstruct a protocol's output: one share column, or a list/tuple of them."""
    first = result.outputs[0]
    if isinstance(first, list | tuple):
        return [reconstruct([o[k] for o in result.outputs]) for k in range(len(first))]
    return reconstruct(result.outputs)


def mpc_query(
    events: Events, config: QueryConfig, noise: NoiseHook = no_noise, site: str | None = None
) -> tuple[np.ndarray, list[QueryResult]]:
    """The reconstructed sums of ``run_query`` on ``events`` for querying ``site``, and each QueryResult."""
    shares = share_events(events, config, site)
    result = run_three(lambda ctx, rows: run_query(ctx, rows, config, noise), shares)
    return reconstruct([r.sums for r in result.outputs]), result.outputs


def events(rows: Sequence[tuple[int, ...]]) -> Events:
    """Events from rows of the six ``COLUMNS``, in CSV order (timestamp, match key, ...)."""
    if not rows:
        return Events.empty()
    columns = zip(*rows, strict=True)
    return Events.from_columns(**{name: list(col) for name, col in zip(COLUMNS, columns, strict=True)})
