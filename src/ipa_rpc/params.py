"""A query's parameters between their wire message and plain values by field name.

The core's ``ipa.query.QuerySpec`` says which fields a query has and what they
mean (``fields()``, ``from_fields()``); this module only moves them in and out
of ``ipa.v1.QueryParams``, for the client and the helpers alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ipa_rpc.v1 import query_pb2

__all__ = ["params_fields", "params_message"]


def params_message(fields: Mapping[str, Any]) -> query_pb2.QueryParams:
    """The wire message of parameters by field name (None: an optional field left absent; enums by name)."""
    return query_pb2.QueryParams(**{name: value for name, value in fields.items() if value is not None})


def params_fields(message: query_pb2.QueryParams) -> dict[str, Any]:
    """Every field of ``message`` by name: an absent optional one None, an enum by its name."""
    found: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        if field.has_presence and not message.HasField(field.name):
            found[field.name] = None
            continue
        value = getattr(message, field.name)
        if field.enum_type is not None:
            known = field.enum_type.values_by_number.get(value)
            value = known.name if known is not None else str(value)
        found[field.name] = value
    return found
