"""Three-party helpers for the attribution tests: a whole query in the in-memory runner, events from rows.

Running one protocol and opening its output is :mod:`ipa.mpc.testing`.
"""

from collections.abc import Sequence

import numpy as np

from ipa.attribution.config import QueryConfig
from ipa.attribution.pipeline import NoiseHook, QueryResult, no_noise, run_query
from ipa.attribution.rows import share_events
from ipa.events import COLUMNS, Events
from ipa.mpc.memory import run_three
from ipa.mpc.sharing import reconstruct


def mpc_query(
    events: Events,
    config: QueryConfig,
    noise: NoiseHook = no_noise,
    site: str | None = None,
    security: str = "semi-honest",
) -> tuple[np.ndarray, list[QueryResult]]:
    """The reconstructed sums of ``run_query`` on ``events`` for querying ``site``, and each QueryResult."""
    shares = share_events(events, config, site)
    result = run_three(lambda ctx, rows: run_query(ctx, rows, config, noise), shares, security=security)
    return reconstruct([r.sums for r in result.outputs]), result.outputs


def events(rows: Sequence[tuple[int, ...]]) -> Events:
    """Events from rows of the six ``COLUMNS``, in CSV order (timestamp, match key, ...)."""
    if not rows:
        return Events.empty()
    columns = zip(*rows, strict=True)
    return Events.from_columns(**{name: list(col) for name, col in zip(COLUMNS, columns, strict=True)})
