"""A query's parameters as the helpers check and use them (from ``ipa.v1.QueryParams``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ipa.attribution.config import QueryConfig, QueryType
from ipa.crypto.binding import MAX_EPOCH, Binding
from ipa.errors import InputError
from ipa.reports.decode import InvalidReportPolicy
from ipa_rpc.v1 import query_pb2

__all__ = ["MAX_EPOCH_SPAN", "QuerySpec", "spec_from_proto", "spec_to_proto", "with_network_delta"]

MAX_EPOCH_SPAN = 16
"""Most epochs one query may span (each is charged to the querying site)."""


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

    def __post_init__(self) -> None:
        if self.last_epoch < 0:
            object.__setattr__(self, "last_epoch", self.binding.epoch)

    @property
    def epochs(self) -> range:
        """The epochs the query spans (each charged to the querying site)."""
        return range(self.binding.epoch, self.last_epoch + 1)


def spec_from_proto(p: query_pb2.QueryParams) -> QuerySpec:
    """Check and convert wire parameters; InputError names the bad one."""
    binding = Binding(
        site=p.site,
        report_collector=p.report_collector,
        match_key_provider=p.match_key_provider,
        epoch=p.epoch,
    )
    config = QueryConfig(
        num_breakdowns=p.num_breakdowns,
        cap=p.cap,
        window=p.window if p.HasField("window") else None,
        max_events_per_user=p.max_events_per_user,
        match_key_bits=p.match_key_bits,
        timestamp_bits=p.timestamp_bits,
        breakdown_bits=p.breakdown_bits,
        value_bits=p.value_bits,
        constraint_bits=p.constraint_bits,
        query_type=QueryType.parse(p.query_type or QueryType.SOURCE.value),
    )
    last_epoch = p.last_epoch if p.HasField("last_epoch") else p.epoch
    if not binding.epoch <= last_epoch <= min(MAX_EPOCH, binding.epoch + MAX_EPOCH_SPAN - 1):
        raise InputError(
            f"last_epoch must be in [{binding.epoch}, {binding.epoch + MAX_EPOCH_SPAN - 1}] "
            f"(at most {MAX_EPOCH_SPAN} consecutive epochs), got {last_epoch}"
        )
    if not p.no_noise and not (math.isfinite(p.epsilon) and p.epsilon > 0):
        raise InputError(f"epsilon must be a positive number, got {p.epsilon}")
    if not p.no_noise and not (0 <= p.delta < 1):
        raise InputError(f"delta must be in (0, 1), or 0 for the network's, got {p.delta}")
    policy = InvalidReportPolicy.DROP if p.invalid_reports == query_pb2.DROP else InvalidReportPolicy.FAIL
    return QuerySpec(binding, config, p.epsilon, p.delta, p.no_noise, policy, last_epoch)


def spec_to_proto(spec: QuerySpec) -> query_pb2.QueryParams:
    """The wire parameters of ``spec`` (what the leader forwards to its peers); inverse of the above."""
    binding, config = spec.binding, spec.config
    params = query_pb2.QueryParams(
        site=binding.site,
        epoch=binding.epoch,
        last_epoch=spec.last_epoch,
        query_type=config.query_type.value,
        report_collector=binding.report_collector,
        match_key_provider=binding.match_key_provider,
        num_breakdowns=config.num_breakdowns,
        cap=config.cap,
        max_events_per_user=config.max_events_per_user,
        match_key_bits=config.match_key_bits,
        timestamp_bits=config.timestamp_bits,
        breakdown_bits=config.breakdown_bits,
        value_bits=config.value_bits,
        constraint_bits=config.constraint_bits,
        epsilon=spec.epsilon,
        delta=spec.delta,
        no_noise=spec.no_noise,
        invalid_reports=(
            query_pb2.DROP if spec.invalid_reports is InvalidReportPolicy.DROP else query_pb2.FAIL
        ),
    )
    if config.window is not None:
        params.window = config.window
    return params


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
