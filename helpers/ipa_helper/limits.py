"""What one helper can hold: checked at admission and at the first bytes of an upload.

A query is refused before any budget is reserved when its result share
cannot be returned (``max_breakdowns``: a result share is 16 bytes per
breakdown and must fit one gRPC message) or when the helper already holds
``max_queries`` queries that have not ended (awaiting upload or running).
The number of reports is known only from the upload's header, so the
upload is refused at its first chunk, before it is stored or decrypted, when
it declares more than ``max_rows`` reports, more bytes than
``max_upload_bytes``, or more working memory than ``max_query_memory_bytes``
(estimated by :func:`working_memory`); that query fails everywhere and its
reserved ε is refunded. Every refusal is a :class:`LimitError`
(RESOURCE_EXHAUSTED on the wire) naming the limit and its value.
"""

from __future__ import annotations

from ipa.attribution.config import QueryConfig
from ipa.errors import IpaError
from ipa_rpc import MAX_MESSAGE_BYTES

__all__ = [
    "MEASURED_PEAK_MIB",
    "RESULT_BYTES_PER_BREAKDOWN",
    "LimitError",
    "check_query",
    "check_upload",
    "largest_max_breakdowns",
    "working_memory",
]

RESULT_BYTES_PER_BREAKDOWN = 16
"""A helper's result share: two 64-bit components per breakdown."""

_RESULT_OVERHEAD = 4096  # protobuf framing and the helper index, with room to spare
_BYTES_PER_ROW = 896  # upload, decoded report, sort, attribution and cap columns, with their temporaries
_BYTES_PER_ONE_HOT = 16  # per report and one-hot column of the aggregation: a word, and the one received

MEASURED_PEAK_MIB = (1071, 1424)
"""Peak RSS per helper process (MiB), least and most, at 10^6 reports with 8-bit breakdown keys:
``bench/e2e.py --events 1000000`` with 1 and 2 Ray workers (the coordinators), 2026-12-01
(docs/scaling.md, *Measured*). :func:`working_memory` is kept within it (tests/helpers/test_limits.py)."""


class LimitError(IpaError):
    """A query or upload exceeds one of this helper's configured limits."""


def largest_max_breakdowns() -> int:
    """The most breakdowns whose result share fits one gRPC message."""
    return (MAX_MESSAGE_BYTES - _RESULT_OVERHEAD) // RESULT_BYTES_PER_BREAKDOWN


def working_memory(config: QueryConfig, rows: int) -> int:
    """Estimated peak bytes one helper needs to run the query over ``rows`` reports.

    Linear in ``rows``: 896 bytes per report for the upload, decoding, sort,
    attribution and cap, plus 16 bytes per report for each one-hot indicator
    of the two halves of the breakdown key in the aggregation (2^⌈w/2⌉ +
    2^⌊w/2⌋ of them for w-bit keys: the word and the one received for it).
    At w = 8 that is 1,408 bytes per report, 1.31 GiB at 10^6 reports, within
    the peak RSS measured per helper process there (:data:`MEASURED_PEAK_MIB`:
    1.05–1.39 GiB); the estimate of before (1.5 KiB plus 48 bytes per
    indicator, 3 KiB per report at w = 8) predates the memory work of issue 18.
    The result adds 16 bytes per breakdown.
    """
    w = config.breakdown_bits
    one_hots = (1 << ((w + 1) // 2)) + (1 << (w // 2))
    per_row = _BYTES_PER_ROW + _BYTES_PER_ONE_HOT * one_hots
    return rows * per_row + RESULT_BYTES_PER_BREAKDOWN * config.num_breakdowns


def check_query(config: QueryConfig, active: int, max_breakdowns: int, max_queries: int) -> None:
    """At admission: LimitError if the result cannot be returned or no query slot is free."""
    if config.num_breakdowns > max_breakdowns:
        raise LimitError(
            f"num_breakdowns {config.num_breakdowns} exceeds this helper's max_breakdowns "
            f"({max_breakdowns}): its result share could not be returned"
        )
    if active >= max_queries:
        raise LimitError(
            f"this helper holds {active} queries that have not ended, its max_queries: try again later"
        )


def check_upload(
    config: QueryConfig, rows: int, size: int, max_rows: int, max_upload_bytes: int, max_memory: int
) -> None:
    """At an upload's header (``rows`` reports in ``size`` bytes): LimitError if it cannot run here."""
    if rows > max_rows:
        raise LimitError(f"the upload declares {rows} reports, more than this helper's max_rows ({max_rows})")
    if size > max_upload_bytes:
        raise LimitError(
            f"the upload declares {size} bytes, more than this helper's max_upload_bytes ({max_upload_bytes})"
        )
    needed = working_memory(config, rows)
    if needed > max_memory:
        raise LimitError(
            f"{rows} reports with {config.breakdown_bits}-bit breakdown keys need about {needed} bytes, "
            f"more than this helper's max_query_memory_bytes ({max_memory})"
        )
