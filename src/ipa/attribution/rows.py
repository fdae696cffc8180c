"""Generic rows: one party's shares of a query's events, sources and triggers alike.

Inside the MPC a source and a trigger look the same: every row has every
column, and ``is_trigger`` is secret. Every column is a boolean sharing of
its query width, so each helper can check alone that its components fit
(a trigger value wider than ``value_bits`` would break the DP sensitivity
bound); the pipeline turns the value into an arithmetic sharing after the
sort, where it is summed.

**Presort contract.** The report collector submits rows ordered by
(timestamp, sources before triggers), ties in input order: it knows its own
timestamps, so this costs the MPC nothing. A stable sort on
(match key, constraint id) then yields the order the attribution rules use.

:func:`share_events` makes all three parties' rows at once (tests, ``ipa
simulate``). With encrypted reports the report collector shares only its own
columns (:func:`share_collector_fields`), the match keys come from user agents,
and each helper decodes its rows with :func:`ipa.reports.decode.decode_batch`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from ipa.attribution.config import QueryConfig
from ipa.errors import InputError
from ipa.events import Events
from ipa.mpc.replicated import BShares
from ipa.mpc.sharing import share_boolean

__all__ = [
    "COLLECTOR_FIELDS",
    "SharedRows",
    "check_ranges",
    "presort",
    "presort_order",
    "share_collector_fields",
    "share_events",
]

COLLECTOR_FIELDS: tuple[str, ...] = (
    "constraint_id",
    "timestamp",
    "is_trigger",
    "breakdown_key",
    "trigger_value",
)
"""The columns the report collector shares itself (the match key comes from user agents)."""


@dataclass(frozen=True)
class SharedRows:
    """One party's share columns of n generic rows.

    ``off_site`` is public, the same at every helper: (n,) bool, rows made on
    a site other than the querying site (``None``: none), which
    :func:`ipa.attribution.sites.neutralise` handles.
    """

    match_key: BShares
    constraint_id: BShares
    timestamp: BShares
    is_trigger: BShares
    breakdown_key: BShares
    trigger_value: BShares
    off_site: np.ndarray = None  # type: ignore[assignment]  # None: every row is on the querying site

    def __post_init__(self) -> None:
        off_site = np.zeros(len(self), bool) if self.off_site is None else np.asarray(self.off_site, bool)
        if off_site.shape != (len(self),):
            raise InputError(f"off_site must be a ({len(self)},) mask")
        object.__setattr__(self, "off_site", off_site)

    def __len__(self) -> int:
        return len(self.match_key)

    def block(self, rows: slice) -> SharedRows:
        """Rows ``rows`` (a contiguous range), each column a contiguous copy of its own: one
        worker's block of a distributed query (:func:`ipa.mpc.collective.slices`)."""
        shares = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "off_site"}
        cut = {name: c.map(lambda a: np.ascontiguousarray(a[..., rows])) for name, c in shares.items()}
        return replace(self, **cut, off_site=self.off_site[rows].copy())

    @property
    def nbytes(self) -> int:
        """The bytes of this party's share columns (both components) and of the site mask."""
        return sum(c.left.nbytes + c.right.nbytes for c in self.columns()) + self.off_site.nbytes

    def columns(self) -> tuple[BShares, ...]:
        """Every share column (all but the public ``off_site``), in field order."""
        return (
            self.match_key,
            self.constraint_id,
            self.timestamp,
            self.is_trigger,
            self.breakdown_key,
            self.trigger_value,
        )


def presort_order(events: Events) -> np.ndarray:
    """The row order the report collector submits: (timestamp, sources first), stable."""
    return np.lexsort((events.is_trigger, events.timestamp))


def presort(events: Events) -> Events:
    """The events in the order the report collector submits: (timestamp, sources first), stable."""
    return events.take(presort_order(events))


def check_ranges(events: Events, config: QueryConfig, fields: tuple[str, ...] | None = None) -> None:
    """InputError naming the first event whose field (of ``fields``, default all) overflows its width."""
    for field, bits in config.field_bits().items():
        if fields is not None and field not in fields:
            continue
        column = getattr(events, field)
        too_big: np.ndarray | list[int] = (
            np.flatnonzero(column.astype(np.uint64) >> np.uint64(bits)) if bits < 64 else []
        )
        if len(too_big):
            row = int(too_big[0])
            # The value itself is not printed: it may be a match key.
            raise InputError(f"event {row}: field {field} does not fit in {bits} bits")


def share_collector_fields(events: Events, config: QueryConfig) -> dict[str, list[BShares]]:
    """The three parties' shares of the report collector's columns, in the events' order.

    Keys are :data:`COLLECTOR_FIELDS`; each value is the three parties' shares.
    Triggers' breakdown keys and sources' trigger values are ignored by the
    rules, so they are shared as zero; ``is_trigger`` is a 1-bit boolean
    sharing. Raises InputError naming the first event whose field does not
    fit its width.
    """
    check_ranges(events, config, COLLECTOR_FIELDS)
    trigger = events.is_trigger.astype(np.uint64)
    return {
        "constraint_id": share_boolean(events.constraint_id, config.constraint_bits),
        "timestamp": share_boolean(events.timestamp, config.timestamp_bits),
        "is_trigger": share_boolean(trigger, 1),
        "breakdown_key": share_boolean(events.breakdown_key * (1 - trigger), config.breakdown_bits),
        "trigger_value": share_boolean(events.trigger_value * trigger, config.value_bits),
    }


def share_events(events: Events, config: QueryConfig, site: str | None = None) -> list[SharedRows]:
    """The three parties' shares of ``events``, presorted, as a report collector makes them.

    ``site`` is the querying site: the rows' public ``off_site`` mask says
    which events name another one (``None``: the events must name no site).
    Triggers' breakdown keys and sources' trigger values are ignored by the
    rules, so they are shared as zero. Raises InputError naming the first
    event whose field does not fit its width, or if ``site`` is None while
    events name sites.
    """
    check_ranges(events, config)
    ev = presort(events)
    if site is None and ev.sites():
        raise InputError(f"the events name sites ({', '.join(ev.sites()[:3])}): give the querying site")
    off_site = ev.off_site(site) if site is not None else np.zeros(len(ev), bool)
    columns: dict[str, list] = {"match_key": share_boolean(ev.match_key, config.match_key_bits)}
    columns |= share_collector_fields(ev, config)
    return [SharedRows(**{k: v[i] for k, v in columns.items()}, off_site=off_site) for i in range(3)]
