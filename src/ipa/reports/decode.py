"""Helper i's decoder: from its own upload batch to its share columns.

Helper i decodes only its own batch (:func:`decode_batch`) into its share
columns: it learns n, the clear-text header fields (:mod:`ipa.reports.layout`),
the site and epoch of every report, and which reports are invalid; every
share it holds is one of its two components. NB: identical match-key
ciphertexts show a helper which reports came from one user agent for this
(site, collector, provider, epoch): the linkage the report collector already
has from the user agent's cache, nothing more.

Sites and epochs
----------------
Each report's part is opened with the ``info`` of the report's *own* site
(named in the batch's site table) and epoch, so a part made on another site
or in another epoch than the one it claims fails to open: the binding is
checked per report, by each helper alone. The query's site is the querying
site; the reports made elsewhere are marked in the rows' public
``off_site`` mask (``SharedRows.off_site``), which the MPC uses to
neutralise them on the querying side (:mod:`ipa.attribution.sites`). A
report's epoch must lie in the query's epochs ``[first, last]``.

Validation
----------
A batch whose header or chunks are bad is refused as a whole
(:class:`~ipa.errors.InvalidReportError`, ``index`` None or the first report
of a bad chunk): TRUNCATED, CORRUPT, WRONG_HELPER, wrong or expired epoch,
wrong site, report collector or provider, UNKNOWN_KEY_ID, DECRYPTION_FAILED.
Each report is then checked, and gets the first failing reason of: CORRUPT
(version), WRONG_HELPER, EXPIRED_EPOCH, WRONG_EPOCH (outside the query's
epochs), WRONG_SITE (a site tag the site table does not name),
WRONG_REPORT_COLLECTOR, WRONG_MATCH_KEY_PROVIDER, UNKNOWN_KEY_ID,
OUT_OF_RANGE (a component above the query's width, or an ``is_trigger``
component other than 0/1; every field is a boolean sharing so that each
helper can check this alone: a trigger value above ``value_bits`` would
break the DP sensitivity bound), DECRYPTION_FAILED,
DUPLICATE (byte-identical to an earlier valid report after decryption).
With :attr:`InvalidReportPolicy.FAIL` the first invalid report raises;
with ``DROP`` all are returned with their reasons (:class:`DecodedBatch`).

NB: the three helpers must drop the *same* rows, or their shares no longer
line up. A report can be valid at one helper and not another (a corrupt
part), so helpers exchange their ``valid`` masks and each keeps the rows
valid at all three (:meth:`DecodedBatch.select`). Which reports are invalid
is a property of ciphertext bytes, not of secrets, so the exchange reveals
nothing protected.

Cost: parsing and every check are numpy over whole columns; HPKE opens are
per distinct match-key ciphertext (:func:`ipa.crypto.opener.open_many`).

In parts
--------
A helper with W workers decodes its batch in W slices of reports: it reads
the head once (:func:`read_head`: the same checks and errors), each worker
decodes the chunks covering its slice (:func:`decode_part`), and the workers
find the duplicates of the whole batch among themselves
(:func:`exchange_duplicates`). The reasons and rows of the slices, joined,
are those of :func:`decode_batch` with policy DROP; the first invalid report
of the batch is the first of the slices' (:func:`raise_first_invalid`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ipa._checks import integer
from ipa.attribution.config import QueryConfig
from ipa.attribution.rows import SharedRows
from ipa.crypto.binding import MAX_EPOCH, Binding, Purpose, check_name, info, tag
from ipa.crypto.hpke import Suite, open_sealed
from ipa.crypto.keys import KeyRegistry
from ipa.crypto.opener import Opener, group_identical, open_many, row_hash
from ipa.errors import InputError, InvalidReportError, InvalidReportReason
from ipa.mpc.collective import Blocks, Collective
from ipa.mpc.replicated import BShares
from ipa.mpc.ring import bool_dtype, mask
from ipa.reports.layout import (
    BATCH_HEADER,
    BATCH_KEY_BYTES,
    BATCH_MAGIC,
    FIELD_RECORD,
    FORMAT_VERSION,
    MATCH_KEY_PLAINTEXT,
    QUERY_TAIL,
    TAG_BYTES,
    chunk_aad,
    chunk_nonce,
    match_key_record_dtype,
    unpack_sites,
)

__all__ = [
    "BatchHead",
    "DecodedBatch",
    "Duplicates",
    "InvalidReportPolicy",
    "batch_head_length",
    "batch_size",
    "decode_batch",
    "decode_part",
    "exchange_duplicates",
    "raise_first_invalid",
    "read_head",
]

_R = InvalidReportReason


class InvalidReportPolicy(enum.Enum):
    """What a query does with invalid reports."""

    FAIL = "fail"
    """The first invalid report fails the query (raises InvalidReportError)."""
    DROP = "drop"
    """Invalid reports are dropped and counted by reason."""


@dataclass(frozen=True)
class DecodedBatch:
    """One helper's decoded batch: all n rows in submitted order, and each row's verdict.

    ``reasons[r]`` is 0 for a valid report, else an InvalidReportReason
    value; invalid rows hold zero shares. ``distinct_match_keys`` is the
    number of HPKE opens the batch took.
    """

    rows: SharedRows
    reasons: np.ndarray
    distinct_match_keys: int = 0

    @property
    def valid(self) -> np.ndarray:
        """(n,) bool: the reports valid at this helper."""
        return self.reasons == 0

    @property
    def off_site(self) -> np.ndarray:
        """(n,) bool: the valid reports made off the querying site."""
        return self.rows.off_site

    def rejected(self) -> dict[str, int]:
        """Counts of invalid reports by reason name (e.g. ``{"DUPLICATE": 2}``); empty if none."""
        codes, counts = np.unique(self.reasons[self.reasons != 0], return_counts=True)
        return {_R(int(c)).name: int(k) for c, k in zip(codes, counts, strict=True)}

    def select(self, keep: np.ndarray | None = None) -> SharedRows:
        """The rows where ``keep`` (default :attr:`valid`) is true, in order.

        With several helpers, pass the AND of all three helpers' ``valid`` masks.
        """
        keep = self.valid if keep is None else np.asarray(keep, dtype=bool)
        if keep.shape != self.reasons.shape:
            raise InputError(f"keep must be a ({len(self.reasons)},) mask")
        r = self.rows
        if keep.all():
            return r  # every row: these very columns (shares are never written in place)
        return SharedRows(*(getattr(r, f)[keep] for f in SharedRows.__dataclass_fields__))


def batch_head_length(head: bytes | bytearray) -> int:
    """How many first bytes of an upload batch :func:`batch_size` reads (42 + S + 8).

    ``head`` holds at least the first ``BATCH_HEADER.size`` (42) bytes;
    InvalidReportError (TRUNCATED or CORRUPT) if they are malformed.
    """
    return _batch_head(head)[0] + QUERY_TAIL.size


def batch_size(head: bytes | bytearray) -> tuple[int, int]:
    """(n, total bytes) an upload batch declares in its first :func:`batch_head_length` bytes.

    Lets a helper refuse a batch that is too large, or longer than it says,
    from its first chunk, before storing or decrypting the rest.
    InvalidReportError (TRUNCATED or CORRUPT) if the header is malformed.
    """
    at, suite, n, chunk_rows = _batch_head(head)
    if len(head) < at + QUERY_TAIL.size:
        raise InvalidReportError(_R.TRUNCATED, detail="batch header")
    _, _, table_bytes = QUERY_TAIL.unpack_from(head, at)
    start = at + QUERY_TAIL.size + table_bytes
    return n, _batch_length(start, n, chunk_rows, match_key_record_dtype(suite).itemsize)


def _batch_head(head: bytes | bytearray) -> tuple[int, Suite, int, int]:
    """(offset of the query tail, suite, n, reports per chunk) from the 42-byte header."""
    if len(head) < BATCH_HEADER.size:
        raise InvalidReportError(_R.TRUNCATED, detail="batch header")
    magic, version, suite_id, _, _, _, _, _, _, n, chunk_rows = BATCH_HEADER.unpack_from(head)
    if magic != BATCH_MAGIC:
        raise InvalidReportError(_R.CORRUPT, detail="not an upload batch")
    if version != FORMAT_VERSION or suite_id not in {int(s) for s in Suite}:
        raise InvalidReportError(_R.CORRUPT, detail="unknown batch format version or suite")
    if chunk_rows == 0:
        raise InvalidReportError(_R.CORRUPT, detail="zero reports per chunk")
    suite = Suite(suite_id)
    return BATCH_HEADER.size + suite.sealed_length(BATCH_KEY_BYTES), suite, n, chunk_rows


def _batch_length(start: int, n: int, chunk_rows: int, record_width: int) -> int:
    """The length of a batch whose first chunk begins at ``start``."""
    chunks = -(-n // chunk_rows)
    return start + n * (record_width + FIELD_RECORD.itemsize) + chunks * TAG_BYTES


def decode_batch(
    data: bytes | bytearray,
    keys: KeyRegistry,
    binding: Binding,
    config: QueryConfig,
    *,
    policy: InvalidReportPolicy = InvalidReportPolicy.FAIL,
    oldest_epoch: int | None = None,
    last_epoch: int | None = None,
    workers: int | None = None,
    opener: Opener | None = None,
    consume: bool = False,
) -> DecodedBatch:
    """Helper ``keys.helper``'s share columns from its upload batch, for a query bound to ``binding``.

    The query's epochs are ``binding.epoch`` to ``last_epoch`` (default: that
    one epoch). ``oldest_epoch`` (default: the query's first epoch) is the
    oldest epoch this helper still accepts: an earlier report is
    EXPIRED_EPOCH, one outside the query's epochs WRONG_EPOCH. ``workers``:
    processes for the HPKE opens (default: all cores); ``opener``: what opens
    them instead of :func:`open_many`. ``consume``:
    ``data``, a bytearray, is emptied once its records are read, so that its
    memory is freed before the match keys are opened (a helper's upload
    buffer, which it would otherwise keep beside every decoded column). Raises
    InvalidReportError for a bad batch, or (policy FAIL) for the first
    invalid report; see the module docstring for the checks and their order.
    """
    if not isinstance(data, bytes | bytearray):
        data = bytes(data)  # a bytearray (a helper's upload buffer) is read in place, not copied
    head = read_head(data, keys, binding, oldest_epoch=oldest_epoch, last_epoch=last_epoch)
    records, fields = _read_chunks(data, head, 0, head.chunks, head.start)
    if consume and isinstance(data, bytearray):
        del data[:]  # every view of it is gone: the records and fields are copies
    opener = opener or partial(open_many, workers=workers)
    batch, details = _decode_records(records, fields, head, keys, binding, config, opener, _duplicates)
    if policy is InvalidReportPolicy.FAIL:
        raise_first_invalid(batch.reasons, details)
    return batch


@dataclass(frozen=True)
class BatchHead:
    """What decoding any part of a batch needs from its head, read and checked once (:func:`read_head`).

    ``batch_key`` is the batch's AES-GCM key: a secret of this helper, which
    only its own processes (its workers) may hold.
    """

    n: int
    chunk_rows: int
    start: int
    """Where the first chunk begins."""
    record_width: int
    suite: int
    sites: tuple[str, ...]
    aad: bytes
    """The header part of every chunk's AAD."""
    batch_key: bytes = field(repr=False)
    oldest: int = 0
    last: int = 0

    @property
    def chunks(self) -> int:
        return -(-self.n // self.chunk_rows)

    def chunk_offset(self, j: int) -> int:
        """Where chunk ``j`` begins (``j`` up to :attr:`chunks`: the batch's end)."""
        rows = min(j * self.chunk_rows, self.n)
        return self.start + rows * (self.record_width + FIELD_RECORD.itemsize) + j * TAG_BYTES

    def span(self, rows: slice) -> tuple[int, int]:
        """(first, stop) chunk numbers covering reports ``rows`` (empty rows: an empty span)."""
        if rows.stop <= rows.start:
            return 0, 0
        return rows.start // self.chunk_rows, -(-rows.stop // self.chunk_rows)


def read_head(
    data: bytes | bytearray,
    keys: KeyRegistry,
    binding: Binding,
    *,
    oldest_epoch: int | None = None,
    last_epoch: int | None = None,
) -> BatchHead:
    """Check an upload batch's header, site table and length, and open its batch key.

    The first steps of :func:`decode_batch` (same arguments, same errors), for
    a helper that decodes its batch in parts (:func:`decode_part`).
    """
    oldest = (
        binding.epoch if oldest_epoch is None else integer("oldest_epoch", oldest_epoch, 0, binding.epoch)
    )
    last = integer(
        "last_epoch", binding.epoch if last_epoch is None else last_epoch, binding.epoch, MAX_EPOCH
    )
    header = _check_header(data, keys, binding, oldest)
    n, chunk_rows, key_id = header["n"], header["chunk_rows"], header["key_id"]
    suite = keys.suite
    record_dtype = match_key_record_dtype(suite)
    sites, start = _read_query_tail(data, suite, last)
    _check_length(data, start, n, chunk_rows, record_dtype.itemsize)
    batch_key = keys.private_key(key_id)
    sealed_end = BATCH_HEADER.size + suite.sealed_length(BATCH_KEY_BYTES)
    try:
        bound = info(Purpose.BATCH_KEY, FORMAT_VERSION, suite, key_id, keys.helper, binding)
        secret = open_sealed(batch_key, bytes(data[BATCH_HEADER.size : sealed_end]), bound)
    except InvalidReportError:
        raise InvalidReportError(_R.DECRYPTION_FAILED, detail="batch key") from None
    aad = bytes(data[: BATCH_HEADER.size]) + bytes(data[sealed_end:start])
    return BatchHead(
        n, chunk_rows, start, record_dtype.itemsize, int(suite), tuple(sites), aad, secret, oldest, last
    )


Duplicates = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(records, fields, valid) -> the valid rows byte-identical to an earlier valid row of the batch."""


def decode_part(
    part: bytes | bytearray | np.ndarray,
    head: BatchHead,
    rows: slice,
    keys: KeyRegistry,
    binding: Binding,
    config: QueryConfig,
    duplicates: Duplicates,
) -> tuple[DecodedBatch, dict[int, str]]:
    """Reports ``rows`` of a batch, decoded from ``part``: the bytes of the chunks that cover them
    (``head.chunk_offset`` of ``head.span(rows)``), as :func:`decode_batch` with policy DROP would.

    ``duplicates`` finds the rows that duplicate an earlier row *of the whole
    batch* (:func:`exchange_duplicates`, with the workers holding the other
    parts). The match keys are opened in this process. Returns the decoded
    rows and, per invalid row (index within ``rows``), what was out of range.
    InvalidReportError (DECRYPTION_FAILED, the chunk's first report) if a
    chunk's fields do not open: ``duplicates`` has not been called then.
    """
    first, stop = head.span(rows)
    records, fields = _read_chunks(part, head, first, stop, 0)
    skip = rows.start - first * head.chunk_rows
    within = slice(skip, skip + rows.stop - rows.start)
    if within != slice(0, len(records)):
        records, fields = records[within].copy(), fields[within].copy()
    opener = partial(open_many, workers=1)
    return _decode_records(records, fields, head, keys, binding, config, opener, duplicates)


def raise_first_invalid(reasons: np.ndarray, details: dict[int, str], offset: int = 0) -> None:
    """InvalidReportError for the first invalid row (its index plus ``offset``), if there is one."""
    if reasons.any():
        first = int(np.flatnonzero(reasons)[0])
        reason = _R(int(reasons[first]))
        detail = details.get(first, "") if reason is _R.OUT_OF_RANGE else ""
        raise InvalidReportError(reason, first + offset, detail)


def _decode_records(
    records: np.ndarray,
    fields: np.ndarray,
    head: BatchHead,
    keys: KeyRegistry,
    binding: Binding,
    config: QueryConfig,
    opener: Opener,
    duplicates: Duplicates,
) -> tuple[DecodedBatch, dict[int, str]]:
    """Every report's checks, its opened match key and its share columns; (batch, range details)."""
    n = len(records)
    reasons = np.zeros(n, dtype=np.uint8)
    _, collector, provider = binding.tags()
    sites = list(head.sites)
    site_index = _site_index(records["site"], sites)
    _flag(reasons, records["version"] != FORMAT_VERSION, _R.CORRUPT)
    _flag(reasons, records["helper"] != keys.helper, _R.WRONG_HELPER)
    _flag(reasons, records["epoch"] < head.oldest, _R.EXPIRED_EPOCH)
    _flag(reasons, (records["epoch"] < binding.epoch) | (records["epoch"] > head.last), _R.WRONG_EPOCH)
    _flag(reasons, site_index < 0, _R.WRONG_SITE)
    _flag(reasons, records["report_collector"] != collector, _R.WRONG_REPORT_COLLECTOR)
    _flag(reasons, records["match_key_provider"] != provider, _R.WRONG_MATCH_KEY_PROVIDER)
    _flag(reasons, ~np.isin(records["key_id"], np.array(list(keys.keys), dtype=np.uint8)), _R.UNKNOWN_KEY_ID)
    range_detail = _check_field_ranges(reasons, fields, config)

    todo = np.flatnonzero(reasons == 0)
    everything = len(todo) == n  # the usual case: the records themselves, not a copy of them
    plain, ok, distinct = _open_parts(
        keys, binding, sites, records if everything else records[todo],
        site_index if everything else site_index[todo], opener,
    )  # fmt: skip
    del site_index
    failed = np.zeros(n, dtype=bool)
    failed[todo[~ok]] = True
    del ok
    _flag(reasons, failed, _R.DECRYPTION_FAILED)
    _flag(reasons, duplicates(records, fields, reasons == 0), _R.DUPLICATE)

    match_key = np.zeros((n, 2), dtype=np.uint64)
    match_key[todo] = plain.view("<u8").reshape(-1, 2)
    del plain, todo
    off_site = records["site"] != tag("site", binding.site)
    del records
    rows = _shared_rows(match_key, fields, reasons == 0, config, off_site)
    return DecodedBatch(rows, reasons, distinct), range_detail


def _read_query_tail(data: bytes | bytearray, suite: Suite, last: int) -> tuple[list[str], int]:
    """The batch's site table (checked names) and where the chunks start; checks its last epoch."""
    at = BATCH_HEADER.size + suite.sealed_length(BATCH_KEY_BYTES)
    if len(data) < at + QUERY_TAIL.size:
        raise InvalidReportError(_R.TRUNCATED, detail="batch header")
    batch_last, count, table_bytes = QUERY_TAIL.unpack_from(data, at)
    if batch_last != last:
        raise InvalidReportError(_R.WRONG_EPOCH, detail="batch: last epoch")
    if len(data) < at + QUERY_TAIL.size + table_bytes:
        raise InvalidReportError(_R.TRUNCATED, detail="site table")
    table = bytes(data[: at + QUERY_TAIL.size + table_bytes])
    try:
        sites, start = unpack_sites(table, at + QUERY_TAIL.size, count)
        if start != len(table):
            raise InputError("its length is not the sum of its entries")
        for site in sites:
            check_name("site", site)
    except (UnicodeDecodeError, InputError) as exc:
        raise InvalidReportError(_R.CORRUPT, detail=f"site table: {exc}") from None
    except ValueError:
        raise InvalidReportError(_R.TRUNCATED, detail="site table") from None
    return sites, start


def _site_index(site_tags: np.ndarray, sites: list[str]) -> np.ndarray:
    """Each record's index in the site table, or -1 if its tag names no entry."""
    index = np.full(len(site_tags), -1, dtype=np.int64)
    for k, site in enumerate(sites):
        index[site_tags == tag("site", site)] = k
    return index


def _open_parts(
    keys: KeyRegistry,
    binding: Binding,
    sites: list[str],
    records: np.ndarray,
    site_index: np.ndarray,
    opener: Opener,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Open every record's part with the ``info`` of its own site and epoch (and key id).

    Each distinct (key id, site, epoch) gets a one-byte context number that
    :func:`open_many` uses as its key id; a batch with more than 256 of them
    is opened in several calls.
    """
    # One int64 per record: key id (8 bits) | site index | epoch (16 bits); site_index >= 0 here.
    code = records["key_id"].astype(np.int64) << 56
    code |= site_index << 16
    code |= records["epoch"]
    distinct, context = np.unique(code, return_inverse=True)
    del code
    context = context.ravel()
    if len(distinct) <= 256:  # the usual case: one call over all records, without copying them
        local = context.astype(np.uint8)
        return _open_group(keys, binding, sites, distinct, local, records["sealed"], opener)
    plain = np.zeros((len(records), MATCH_KEY_PLAINTEXT), dtype=np.uint8)
    ok = np.zeros(len(records), dtype=bool)
    opened = 0
    for first in range(0, len(distinct), 256):
        rows = np.flatnonzero((context >= first) & (context < first + 256))
        local = (context[rows] - first).astype(np.uint8)
        group = distinct[first : first + 256]
        plain[rows], ok[rows], count = _open_group(
            keys, binding, sites, group, local, records["sealed"][rows], opener
        )
        opened += count
    return plain, ok, opened


def _open_group(
    keys: KeyRegistry,
    binding: Binding,
    sites: list[str],
    codes: np.ndarray,
    local: np.ndarray,
    sealed: np.ndarray,
    opener: Opener,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Open ``sealed[r]`` in context ``codes[local[r]]`` (at most 256 contexts: key id, site, epoch)."""
    private, infos = {}, {}
    for c, code in enumerate(codes.tolist()):
        key_id, site, epoch = code >> 56, (code >> 16) & (2**40 - 1), code & 0xFFFF
        own = Binding(sites[site], binding.report_collector, epoch, binding.match_key_provider)
        private[c] = keys.keys[key_id]
        infos[c] = info(Purpose.MATCH_KEY, FORMAT_VERSION, keys.suite, key_id, keys.helper, own)
    return opener(private, infos, local, sealed, MATCH_KEY_PLAINTEXT)


def _check_header(
    data: bytes | bytearray, keys: KeyRegistry, binding: Binding, oldest: int
) -> dict[str, int]:
    if len(data) < len(BATCH_MAGIC) or (len(data) < BATCH_HEADER.size and data.startswith(BATCH_MAGIC)):
        raise InvalidReportError(_R.TRUNCATED, detail="batch header")
    if not data.startswith(BATCH_MAGIC):
        raise InvalidReportError(_R.CORRUPT, detail="not an upload batch")
    _, version, suite_id, helper, key_id, epoch, site, collector, provider, n, chunk_rows = (
        BATCH_HEADER.unpack_from(data)
    )
    if version != FORMAT_VERSION:
        raise InvalidReportError(_R.CORRUPT, detail=f"unknown batch format version {version}")
    if suite_id != keys.suite:
        raise InvalidReportError(_R.CORRUPT, detail="batch HPKE suite is not this helper's")
    if chunk_rows == 0:
        raise InvalidReportError(_R.CORRUPT, detail="zero reports per chunk")
    if helper != keys.helper:
        raise InvalidReportError(
            _R.WRONG_HELPER, detail=f"batch for H{helper + 1}, this is H{keys.helper + 1}"
        )
    if epoch < oldest:
        raise InvalidReportError(_R.EXPIRED_EPOCH, detail="batch")
    if epoch != binding.epoch:
        raise InvalidReportError(_R.WRONG_EPOCH, detail="batch")
    expected = binding.tags()
    for got, want, reason in zip(
        (site, collector, provider),
        expected,
        (_R.WRONG_SITE, _R.WRONG_REPORT_COLLECTOR, _R.WRONG_MATCH_KEY_PROVIDER),
        strict=True,
    ):
        if got != want:
            raise InvalidReportError(reason, detail="batch")
    return {"n": n, "chunk_rows": chunk_rows, "key_id": key_id}


def _check_length(data: bytes | bytearray, start: int, n: int, chunk_rows: int, record_width: int) -> None:
    """TRUNCATED (index: first incomplete report) or CORRUPT (trailing bytes); chunks begin at ``start``."""
    per_row = record_width + FIELD_RECORD.itemsize
    expected = _batch_length(start, n, chunk_rows, record_width)
    if len(data) < expected:
        chunk_bytes = chunk_rows * per_row + TAG_BYTES
        complete_chunks = (len(data) - start) // chunk_bytes
        raise InvalidReportError(_R.TRUNCATED, min(complete_chunks * chunk_rows, n))
    if len(data) > expected:
        raise InvalidReportError(_R.CORRUPT, detail="trailing bytes after the last chunk")


def _read_chunks(
    data: bytes | bytearray | np.ndarray, head: BatchHead, first: int, stop: int, at: int
) -> tuple[np.ndarray, np.ndarray]:
    """Records and decrypted field records of chunks ``first`` … ``stop - 1``, read from ``at`` on."""
    aead = AESGCM(head.batch_key)
    record_dtype = match_key_record_dtype(Suite(head.suite))
    lo, hi = first * head.chunk_rows, min(stop * head.chunk_rows, head.n)
    records = np.empty(max(hi - lo, 0), dtype=record_dtype)
    fields = np.empty(max(hi - lo, 0), dtype=FIELD_RECORD)
    view = (data.data if isinstance(data, np.ndarray) else memoryview(data)).cast("B")
    for j in range(first, stop):
        start = j * head.chunk_rows
        rows = slice(start - lo, min(start + head.chunk_rows, head.n) - lo)
        r = rows.stop - rows.start
        records[rows] = np.frombuffer(view, dtype=record_dtype, count=r, offset=at)
        at += r * record_dtype.itemsize
        sealed_length = r * FIELD_RECORD.itemsize + TAG_BYTES
        try:
            plain = aead.decrypt(chunk_nonce(j), view[at : at + sealed_length], chunk_aad(head.aad, j))
        except InvalidTag:
            raise InvalidReportError(_R.DECRYPTION_FAILED, start, "field chunk") from None
        fields[rows] = np.frombuffer(plain, dtype=FIELD_RECORD)
        at += sealed_length
    view.release()
    return records, fields


def _flag(reasons: np.ndarray, bad: np.ndarray, reason: InvalidReportReason) -> None:
    """Give ``reason`` to the rows that are ``bad`` and not yet flagged."""
    reasons[bad & (reasons == 0)] = reason


def _check_field_ranges(reasons: np.ndarray, fields: np.ndarray, config: QueryConfig) -> dict[int, str]:
    """Flag OUT_OF_RANGE rows; return, per flagged row, which field (for the error message)."""
    details: dict[int, str] = {}
    widths = {
        "timestamp": config.timestamp_bits,
        "breakdown_key": config.breakdown_bits,
        "trigger_value": config.value_bits,
        "constraint_id": config.constraint_bits,
        "is_trigger": 1,
    }
    for name, width in widths.items():
        components = fields[name]
        wide = components >> np.uint64(width) if width < 64 else np.zeros_like(components)
        bad = np.asarray(wide.any(axis=1))
        for row in np.flatnonzero(bad & (reasons == 0))[:1]:
            details[int(row)] = f"field {name} has a share component wider than {width} bits"
        _flag(reasons, bad, _R.OUT_OF_RANGE)
    return details


def _duplicates(records: np.ndarray, fields: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Valid rows byte-identical (match-key record and field record) to an earlier valid row."""
    index = np.flatnonzero(valid)
    duplicate = np.zeros(len(records), dtype=bool)
    if len(index) < 2:
        return duplicate
    everything = len(index) == len(records)
    mk, fv = (records, fields) if everything else (records[index], fields[index])
    first, _ = group_identical(
        mk.view(np.uint8).reshape(len(index), -1), fv.view(np.uint8).reshape(len(index), -1)
    )
    later = np.ones(len(index), dtype=bool)
    later[first] = False
    duplicate[index[later]] = True
    return duplicate


def exchange_duplicates(collective: Collective, parts: Blocks, step: str = "decode/duplicates") -> Duplicates:
    """:func:`_duplicates` over the whole batch, for worker ``collective.index`` of the W workers that
    hold its parts (worker k: rows ``parts.rows(k)``, contiguous, in worker order).

    Each worker sends every valid row's bytes (match-key and field record)
    and batch index to the worker picked by the row's hash, so identical rows
    meet on one worker; it groups what it received (in batch order: senders
    in worker order, rows in order), and sends each later copy's index back
    to the worker holding it. Exact: the same rows as :func:`_duplicates` on
    the whole batch. Two all-to-alls inside one helper: 167 bytes per valid
    row that changes worker (a record, its fields and its index), 8 per
    duplicate back. Every worker must call it, also with no rows.
    """
    offset = parts.rows(collective.index).start

    def duplicates(records: np.ndarray, fields: np.ndarray, valid: np.ndarray) -> np.ndarray:
        index = np.flatnonzero(valid)
        mk = records[index].view(np.uint8).reshape(len(index), records.dtype.itemsize)
        fv = fields[index].view(np.uint8).reshape(len(index), fields.dtype.itemsize)
        owner = (row_hash(mk, fv) >> np.uint64(33)) % np.uint64(collective.size)
        order = np.argsort(owner, kind="stable")
        cuts = np.searchsorted(owner[order], np.arange(1, collective.size))
        sent = [
            [index[rows] + offset, mk[rows], fv[rows]] for rows in np.split(order, cuts)
        ]  # fmt: skip
        del mk, fv, order
        got = collective.all_to_all(f"{step}/rows", sent)
        del sent
        at, mk, fv = (np.concatenate([part[i] for part in got]) for i in range(3))
        del got
        later = np.ones(len(at), dtype=bool)
        if len(at):
            first, _ = group_identical(mk, fv)
            later[first] = False
        copies = at[later]
        holder = parts.owner(copies)
        back = collective.all_to_all(f"{step}/later", [[copies[holder == k]] for k in range(collective.size)])
        duplicate = np.zeros(len(records), dtype=bool)
        duplicate[np.concatenate([part[0] for part in back]) - offset] = True
        return duplicate

    return duplicates


def _shared_rows(
    match_key: np.ndarray, fields: np.ndarray, valid: np.ndarray, config: QueryConfig, off_site: np.ndarray
) -> SharedRows:
    """This helper's SharedRows; invalid rows are zero shares."""
    keep = valid[:, None]

    def boolean(components: np.ndarray, width: int) -> BShares:
        c = np.where(keep, components.astype(np.uint64) & np.uint64(mask(width, np.uint64)), 0)
        c = c.astype(bool_dtype(width))
        return BShares(np.ascontiguousarray(c[:, 0]), np.ascontiguousarray(c[:, 1]), width)

    return SharedRows(
        match_key=boolean(match_key, config.match_key_bits),
        constraint_id=boolean(fields["constraint_id"], config.constraint_bits),
        timestamp=boolean(fields["timestamp"], config.timestamp_bits),
        is_trigger=boolean(fields["is_trigger"], 1),
        breakdown_key=boolean(fields["breakdown_key"], config.breakdown_bits),
        trigger_value=boolean(fields["trigger_value"], config.value_bits),
        off_site=off_site & valid,
    )
