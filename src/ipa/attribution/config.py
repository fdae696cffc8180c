"""The public parameters of one attribution query, and the bit widths of its columns."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ipa._checks import integer
from ipa.errors import InputError

__all__ = ["QueryConfig", "QueryType"]


class QueryType(enum.StrEnum):
    """Which side of a query is the querying site's (IPA's source- and trigger-fanout queries).

    In a ``SOURCE`` (source-fanout) query the sources must be made on the
    querying site and triggers may come from any site; ``TRIGGER`` is the
    mirror image. A report on the querying side made on another site is
    *neutralised*: it becomes a trigger of value 0 (``ipa.reference``, rule 0).
    """

    SOURCE = "source"
    TRIGGER = "trigger"

    @classmethod
    def parse(cls, value: object) -> QueryType:
        """``value`` (a QueryType or its name) as a QueryType, or InputError."""
        if isinstance(value, str) and value in {t.value for t in cls}:
            return cls(value)
        raise InputError(f"query_type must be 'source' or 'trigger', got {value!r}")


@dataclass(frozen=True)
class QueryConfig:
    """What the helpers are told about a query; every helper learns all of it.

    ``window`` is in timestamp units (``None``: no window). ``max_events_per_user``
    (K, a power of two) bounds how far back, within a (match key, constraint id)
    group, a trigger looks for its source: at most K−1 rows. ``query_type``
    says which side of the query belongs to the querying site.
    """

    num_breakdowns: int
    cap: int
    window: int | None = None
    max_events_per_user: int = 64
    match_key_bits: int = 40
    timestamp_bits: int = 32
    breakdown_bits: int = 8
    value_bits: int = 16
    constraint_bits: int = 8
    query_type: QueryType = QueryType.SOURCE

    def __post_init__(self) -> None:
        object.__setattr__(self, "query_type", QueryType.parse(self.query_type))
        for name in ("match_key_bits", "timestamp_bits", "breakdown_bits", "value_bits", "constraint_bits"):
            integer(name, getattr(self, name), 1, 64)
        if self.match_key_bits + self.constraint_bits > 64:
            raise InputError("match_key_bits + constraint_bits must be at most 64")
        if 1 + self.breakdown_bits + self.timestamp_bits > 64:
            raise InputError("1 + breakdown_bits + timestamp_bits must be at most 64")
        integer("value_bits", self.value_bits, 1, 32)
        integer("num_breakdowns", self.num_breakdowns, 1, 1 << self.breakdown_bits)
        integer("cap", self.cap, 0, (1 << 62) - 1)
        k = integer("max_events_per_user", self.max_events_per_user, 1, 1 << 20)
        if k & (k - 1):
            raise InputError(f"max_events_per_user must be a power of two, got {k}")
        if self.window is not None:
            integer("window", self.window, 0, (1 << self.timestamp_bits) - 1)

    def field_bits(self) -> dict[str, int]:
        """Bit width of each event field, by its CSV column name."""
        return {
            "timestamp": self.timestamp_bits,
            "match_key": self.match_key_bits,
            "is_trigger": 1,
            "breakdown_key": self.breakdown_bits,
            "trigger_value": self.value_bits,
            "constraint_id": self.constraint_bits,
        }
