"""A query's parameters: what every helper is told about it, and the digest that binds them.

:class:`QuerySpec` is everything a helper is told about a query (all of it
public to the helpers). :meth:`QuerySpec.fields` lists its parameters by
their wire names (``ipa.v1.QueryParams``), in one canonical order; the client
builds its request and the helpers their forwarded copy from it, and
:meth:`QuerySpec.from_fields` checks and converts them back.

Only the leader (H1) receives a query's parameters from the report
collector; it forwards them to H2 and H3. So that a corrupt leader cannot
change them (ε, cap, window, breakdowns, site, epochs, ...), the collector
also sends each helper, in its own upload, :func:`params_digest`: SHA-256 of
:func:`encode_params`, a canonical, versioned encoding of every parameter
and the query id. Each helper recomputes it over the parameters it was asked
to run and refuses a mismatch before the MPC starts (``docs/malicious.md``).
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ipa.attribution.config import QueryConfig, QueryType
from ipa.crypto.binding import MAX_EPOCH, Binding
from ipa.errors import InputError
from ipa.reports.decode import InvalidReportPolicy

__all__ = ["MAX_EPOCH_SPAN", "PARAMS_VERSION", "QuerySpec", "encode_params", "params_digest"]

SECURITY_CHOICES = ("", "malicious", "semi-honest")
"""A query's security mode (``docs/malicious.md``); "" is the helpers' default."""

MAX_EPOCH_SPAN = 16
"""Most epochs one query may span (each is charged to the querying site)."""

PARAMS_VERSION = 2
"""The version of :func:`encode_params`; a change of the encoding or of the fields takes a new one."""

_FIELDS: tuple[tuple[str, type | None], ...] = (
    ("site", str),
    ("epoch", int),
    ("report_collector", str),
    ("num_breakdowns", int),
    ("cap", int),
    ("window", None),  # an optional int
    ("max_events_per_user", int),
    ("match_key_bits", int),
    ("timestamp_bits", int),
    ("breakdown_bits", int),
    ("value_bits", int),
    ("constraint_bits", int),
    ("epsilon", float),
    ("delta", float),
    ("no_noise", bool),
    ("invalid_reports", str),
    ("match_key_provider", str),
    ("last_epoch", int),
    ("query_type", str),
    ("security", str),
)
"""Every parameter by its wire name and kind, in the order of ``ipa.v1.QueryParams``'s field numbers."""

_CONFIG_FIELDS = (
    "num_breakdowns",
    "cap",
    "max_events_per_user",
    "match_key_bits",
    "timestamp_bits",
    "breakdown_bits",
    "value_bits",
    "constraint_bits",
)
"""The integer fields of :class:`~ipa.attribution.config.QueryConfig` besides ``window``."""


@dataclass(frozen=True)
class QuerySpec:
    """Everything a helper is told about a query (all of it is public to the helpers)."""

    binding: Binding  # querying site, report collector, match-key provider, first epoch
    config: QueryConfig  # with the query type
    epsilon: float
    delta: float
    no_noise: bool
    invalid_reports: InvalidReportPolicy
    last_epoch: int = -1  # -1: binding.epoch
    security: str = ""  # "malicious", "semi-honest", or "": the helpers' default (ipa_helper.helper)

    def __post_init__(self) -> None:
        if self.last_epoch < 0:
            object.__setattr__(self, "last_epoch", self.binding.epoch)

    @property
    def epochs(self) -> range:
        """The epochs the query spans (each charged to the querying site)."""
        return range(self.binding.epoch, self.last_epoch + 1)

    def fields(self) -> dict[str, Any]:
        """Every parameter by its wire name, in canonical order (``window`` None: no window).

        ``invalid_reports`` is ``"FAIL"`` or ``"DROP"`` (the wire enum's names).
        """
        binding, config = self.binding, self.config
        values = {
            "site": binding.site,
            "epoch": binding.epoch,
            "report_collector": binding.report_collector,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "no_noise": self.no_noise,
            "invalid_reports": self.invalid_reports.name,
            "match_key_provider": binding.match_key_provider,
            "last_epoch": self.last_epoch,
            "query_type": config.query_type.value,
            "security": self.security,
        }
        return {name: values[name] if name in values else getattr(config, name) for name, _ in _FIELDS}

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> QuerySpec:
        """Check and convert wire parameters (an absent one missing or None); InputError names a bad one.

        An empty ``query_type`` is ``"source"``, an absent ``last_epoch`` is
        ``epoch``, and an ``invalid_reports`` other than ``"DROP"`` is ``"FAIL"``.
        """
        binding = Binding(
            site=fields.get("site", ""),
            report_collector=fields.get("report_collector", ""),
            match_key_provider=fields.get("match_key_provider", ""),
            epoch=fields.get("epoch", 0),
        )
        config = QueryConfig(
            **{name: fields.get(name, 0) for name in _CONFIG_FIELDS},
            window=fields.get("window"),
            query_type=QueryType.parse(fields.get("query_type") or QueryType.SOURCE.value),
        )
        last_epoch = fields.get("last_epoch")
        last_epoch = binding.epoch if last_epoch is None else last_epoch
        if not binding.epoch <= last_epoch <= min(MAX_EPOCH, binding.epoch + MAX_EPOCH_SPAN - 1):
            raise InputError(
                f"last_epoch must be in [{binding.epoch}, {binding.epoch + MAX_EPOCH_SPAN - 1}] "
                f"(at most {MAX_EPOCH_SPAN} consecutive epochs), got {last_epoch}"
            )
        epsilon, delta = float(fields.get("epsilon", 0.0)), float(fields.get("delta", 0.0))
        no_noise = bool(fields.get("no_noise", False))
        if not no_noise and not (math.isfinite(epsilon) and epsilon > 0):
            raise InputError(f"epsilon must be a positive number, got {epsilon}")
        if not no_noise and not (0 <= delta < 1):
            raise InputError(f"delta must be in (0, 1), or 0 for the network's, got {delta}")
        drop = fields.get("invalid_reports") == InvalidReportPolicy.DROP.name
        policy = InvalidReportPolicy.DROP if drop else InvalidReportPolicy.FAIL
        security = str(fields.get("security") or "")
        if security not in SECURITY_CHOICES:
            raise InputError(f"security must be malicious or semi-honest (or empty), got {security!r}")
        return cls(binding, config, epsilon, delta, no_noise, policy, last_epoch, security)


def _text(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">I", len(data)) + data


def _value(kind: type | None, value: Any) -> bytes:
    """One parameter, by its declared kind (not its Python type: 1 and 1.0 as ε encode alike)."""
    if kind is None:  # an optional int
        return b"\x00" if value is None else b"\x01" + int(value).to_bytes(16, "big", signed=True)
    if kind is bool:
        return b"\x01" if value else b"\x00"
    if kind is int:
        return int(value).to_bytes(16, "big", signed=True)
    if kind is float:
        return struct.pack(">d", float(value))
    return _text(str(value))


def encode_params(spec: QuerySpec, query_id: str) -> bytes:
    """The canonical encoding of every parameter of ``spec`` and of ``query_id`` (version 2).

    ``b"ipa/query-params\\0"``, the version as a 2-byte big-endian integer, the
    query id, then for each field of :meth:`QuerySpec.fields` in order its name
    and value. Texts are UTF-8 after a 4-byte big-endian length; integers
    16-byte big-endian two's complement; floats IEEE 754 binary64 big-endian
    (the exact value the wire carries); booleans one byte; an optional integer
    one byte (0 absent, 1 present) and then the integer. Every parameter that
    affects the result or the budget is in it, and nothing else.
    """
    values = spec.fields()
    parts = [b"ipa/query-params\0", struct.pack(">H", PARAMS_VERSION), _text(query_id)]
    for name, kind in _FIELDS:
        parts += [_text(name), _value(kind, values[name])]
    return b"".join(parts)


def params_digest(spec: QuerySpec, query_id: str) -> bytes:
    """SHA-256 of :func:`encode_params` (32 bytes): what the collector sends each helper in its upload."""
    return hashlib.sha256(encode_params(spec, query_id)).digest()
