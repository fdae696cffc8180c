"""A query's parameters as the helpers receive, check and keep them (from ``ipa.v1.QueryParams``).

What the parameters are and their digest live in the core (:mod:`ipa.query`);
here: the wire conversions, the network's δ, and the ledger's copy.
"""

from __future__ import annotations

from dataclasses import replace

from ipa.errors import InputError
from ipa.query import QuerySpec
from ipa_rpc.params import params_fields, params_message
from ipa_rpc.v1 import query_pb2

__all__ = ["spec_from_bytes", "spec_from_proto", "spec_to_bytes", "spec_to_proto", "with_network_delta"]


def spec_from_proto(p: query_pb2.QueryParams) -> QuerySpec:
    """Check and convert wire parameters; InputError names the bad one."""
    return QuerySpec.from_fields(params_fields(p))


def spec_to_proto(spec: QuerySpec) -> query_pb2.QueryParams:
    """The wire parameters of ``spec`` (what the leader forwards to its peers); inverse of the above."""
    return params_message(spec.fields())


def with_network_delta(spec: QuerySpec, delta: float) -> QuerySpec:
    """``spec`` at the network's ``delta``; InputError if the query asked for another δ.

    δ belongs to the network, not to a query: every noised query is
    calibrated at it and the epoch budget is converted at it, so a query
    asking for a larger δ (weaker privacy, less noise) is refused. A query's
    δ of 0 means "the network's".
    """
    if not spec.no_noise and spec.delta not in (0.0, delta):
        raise InputError(
            f"this network's δ is {delta:g}; a query cannot ask for another (it asked δ = {spec.delta:g})"
        )
    return replace(spec, delta=delta)


def spec_to_bytes(spec: QuerySpec) -> bytes:
    """``spec`` as bytes (its wire parameters), kept in the ledger so a restarted helper knows its queries."""
    return spec_to_proto(spec).SerializeToString()


def spec_from_bytes(data: bytes) -> QuerySpec:
    """The inverse of :func:`spec_to_bytes`."""
    return spec_from_proto(query_pb2.QueryParams.FromString(data))
