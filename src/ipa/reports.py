"""Report formats: encrypted match keys, per-helper upload batches, and the helper-side decoder.

Who makes what, and what each party learns
-------------------------------------------
- A **user agent** XOR-splits its 64-bit match key into ``mk_0 ^ mk_1 ^ mk_2``
  and seals ``mk_i ‖ mk_{i+1}`` to helper i (:func:`encrypt_match_key`),
  bound (HPKE ``info``, see :mod:`ipa.crypto.binding`) to the format version,
  suite, key id, helper, site, report collector, match-key provider and
  epoch. The report collector learns nothing about the key.
- The **report collector** secret-shares its own fields and, per helper,
  writes one upload batch (:func:`encode_batch`): the user agents' sealed
  parts pass through untouched, one per report; its own shares are sealed
  per batch (a fresh 16-byte AES-128-GCM batch key, HPKE-sealed to the
  helper, then one AEAD per chunk).
- **Helper i** decodes only its own batch (:func:`decode_batch`) into its
  share columns: it learns n, the clear-text header fields below and which
  reports are invalid; every share it holds is one of its two components.
  NB: identical match-key ciphertexts show a helper which reports came from
  one user agent for this (site, collector, provider, epoch): the linkage the
  report collector already has from the user agent's cache, nothing more.

All integers are little-endian, except inside HPKE ``info``.

Encrypted match key (user agent → site → report collector), version 1
-----------------------------------------------------------------------
::

    0   1   format version (1)
    1   1   HPKE suite id (ipa.crypto.hpke.Suite)
    2   2   epoch
    4   1+a site: length a, UTF-8
    .   1+b report collector: length b, UTF-8
    .   1+c match-key provider: length c, UTF-8 (may be empty)
    .   3×(2+S) for H1, H2, H3: helper index, key id, sealed part
                (S = enc + 16 + 16: 64 bytes for X25519, 1152 for ML-KEM-768+X25519)

Upload batch for helper i, version 1
------------------------------------
Header, 42 + S bytes::

    0   4   magic b"IPAB"
    4   1   format version (1)
    5   1   HPKE suite id
    6   1   helper index i (0, 1, 2)
    7   1   key id of the sealed batch key
    8   2   epoch of the query
    10  8   site tag              (ipa.crypto.binding.tag)
    18  8   report collector tag
    26  8   match-key provider tag
    34  4   n, the number of reports
    38  4   c, reports per chunk (≥ 1)
    42  S   HPKE-sealed 16-byte batch key (purpose BATCH_KEY)

then ``ceil(n / c)`` chunks; chunk j holds r = min(c, n − j·c) reports::

    r × 29+S   match-key records, in the clear (below)
    r×66 + 16  AES-128-GCM under the batch key of r field records,
               nonce = j as 12 bytes big-endian, AAD = header[0:42] ‖ j (4 bytes)

Match-key record (29 + S bytes; 93 for X25519), the user agent's part i::

    0   1   format version (1)
    1   1   helper index i
    2   1   key id
    3   2   epoch the match key was made in
    5   8   site tag (where it was made)
    13  8   report collector tag
    21  8   match-key provider tag
    29  S   sealed mk_i ‖ mk_{i+1} (two u64)

Field record (66 bytes), the same for sources and triggers; each pair is
helper i's components (x_i, x_{i+1})::

    0   16  timestamp       boolean, 2 × u64
    16  16  breakdown key   boolean, 2 × u64 (zero sharing for triggers)
    32  16  trigger value   boolean, 2 × u64 (zero sharing for sources)
    48  16  constraint id   boolean, 2 × u64
    64  2   is_trigger      boolean, 2 × u8 (each 0 or 1)

Validation
----------
A batch whose header or chunks are bad is refused as a whole
(:class:`~ipa.errors.InvalidReportError`, ``index`` None or the first report
of a bad chunk): TRUNCATED, CORRUPT, WRONG_HELPER, wrong or expired epoch,
wrong site, report collector or provider, UNKNOWN_KEY_ID, DECRYPTION_FAILED.
Each report is then checked, and gets the first failing reason of: CORRUPT
(version), WRONG_HELPER, EXPIRED_EPOCH, WRONG_EPOCH, WRONG_SITE,
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
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ipa._checks import integer
from ipa.attribution.config import QueryConfig
from ipa.attribution.rows import SharedRows
from ipa.crypto.binding import Binding, Purpose, info
from ipa.crypto.hpke import Suite, open_sealed, seal
from ipa.crypto.keys import HelperPublicKey, KeyRegistry
from ipa.crypto.opener import group_identical, open_many
from ipa.errors import InputError, InvalidReportError, InvalidReportReason
from ipa.mpc.replicated import BShares
from ipa.mpc.ring import bool_dtype, mask
from ipa.mpc.sharing import share_boolean

__all__ = [
    "BATCH_MAGIC",
    "DEFAULT_CHUNK_ROWS",
    "FIELD_RECORD",
    "FORMAT_VERSION",
    "MATCH_KEY_BITS",
    "DecodedBatch",
    "EncryptedMatchKey",
    "InvalidReportPolicy",
    "MatchKeyPart",
    "check_match_key",
    "decode_batch",
    "encode_batch",
    "encrypt_match_key",
    "match_key_record_dtype",
]

FORMAT_VERSION = 1
BATCH_MAGIC = b"IPAB"
MATCH_KEY_BITS = 64
"""User agents' match keys are 64-bit; a query uses the low ``match_key_bits`` of each."""
DEFAULT_CHUNK_ROWS = 8192
"""Reports per chunk: about 1.3 MB of an X25519 batch, near the 1 MiB the transport likes."""

_MK_PLAINTEXT = 16
_BATCH_KEY_BYTES = 16
_TAG = 16
_HEADER = struct.Struct("<4sBBBBH8s8s8sII")
_EMK_HEAD = struct.Struct("<BBH")

FIELD_RECORD = np.dtype(
    [
        ("timestamp", "<u8", (2,)),
        ("breakdown_key", "<u8", (2,)),
        ("trigger_value", "<u8", (2,)),
        ("constraint_id", "<u8", (2,)),
        ("is_trigger", "u1", (2,)),
    ]
)
"""One report's field record for one helper (66 bytes; layout in the module docstring)."""

_R = InvalidReportReason


def match_key_record_dtype(suite: Suite) -> np.dtype:
    """The match-key record of a batch for ``suite`` (29 + sealed bytes; module docstring)."""
    return np.dtype(
        [
            ("version", "u1"),
            ("helper", "u1"),
            ("key_id", "u1"),
            ("epoch", "<u2"),
            ("site", "S8"),
            ("report_collector", "S8"),
            ("match_key_provider", "S8"),
            ("sealed", "u1", (Suite(suite).sealed_length(_MK_PLAINTEXT),)),
        ]
    )


class InvalidReportPolicy(enum.Enum):
    """What a query does with invalid reports."""

    FAIL = "fail"
    """The first invalid report fails the query (raises InvalidReportError)."""
    DROP = "drop"
    """Invalid reports are dropped and counted by reason."""


# --------------------------------------------------------------- user agent


@dataclass(frozen=True)
class MatchKeyPart:
    """The part of an encrypted match key for one helper: ``sealed`` opens to ``mk_i ‖ mk_{i+1}``."""

    helper: int
    key_id: int
    sealed: bytes


@dataclass(frozen=True)
class EncryptedMatchKey:
    """What ``get_encrypted_match_key`` returns: the binding, and one sealed part per helper."""

    binding: Binding
    suite: Suite
    parts: tuple[MatchKeyPart, MatchKeyPart, MatchKeyPart]

    def __post_init__(self) -> None:
        object.__setattr__(self, "suite", Suite(self.suite))
        length = self.suite.sealed_length(_MK_PLAINTEXT)
        if len(self.parts) != 3 or [p.helper for p in self.parts] != [0, 1, 2]:
            raise InputError("an encrypted match key has one part for each of H1, H2, H3, in order")
        if any(len(p.sealed) != length for p in self.parts):
            raise InputError(f"each sealed part must be {length} bytes for {self.suite.label}")

    def to_bytes(self) -> bytes:
        """The version-1 encoding (module docstring)."""
        b = self.binding
        out = [_EMK_HEAD.pack(FORMAT_VERSION, self.suite, b.epoch)]
        for name in (b.site, b.report_collector, b.match_key_provider):
            data = name.encode("utf-8")
            out += [bytes([len(data)]), data]
        out += [bytes([p.helper, p.key_id]) + p.sealed for p in self.parts]
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> EncryptedMatchKey:
        """Parse :meth:`to_bytes`; InvalidReportError (TRUNCATED or CORRUPT) if malformed."""
        data = bytes(data)
        if len(data) < _EMK_HEAD.size:
            raise InvalidReportError(_R.TRUNCATED, detail="encrypted match key")
        version, suite_id, epoch = _EMK_HEAD.unpack_from(data)
        if version != FORMAT_VERSION or suite_id not in {int(s) for s in Suite}:
            raise InvalidReportError(_R.CORRUPT, detail="unknown encrypted match key version or suite")
        suite, at, names = Suite(suite_id), _EMK_HEAD.size, []
        for _ in range(3):
            if at >= len(data) or at + 1 + data[at] > len(data):
                raise InvalidReportError(_R.TRUNCATED, detail="encrypted match key")
            try:
                names.append(data[at + 1 : at + 1 + data[at]].decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidReportError(_R.CORRUPT, detail="name is not UTF-8") from None
            at += 1 + data[at]
        width = 2 + suite.sealed_length(_MK_PLAINTEXT)
        if len(data) - at < 3 * width:
            raise InvalidReportError(_R.TRUNCATED, detail="encrypted match key")
        if len(data) - at > 3 * width:
            raise InvalidReportError(_R.CORRUPT, detail="trailing bytes after encrypted match key")
        chunks = [data[at + k * width : at + (k + 1) * width] for k in range(3)]
        try:
            binding = Binding(names[0], names[1], epoch, names[2])
            parts = tuple(MatchKeyPart(c[0], c[1], c[2:]) for c in chunks)
            return cls(binding, suite, parts)  # type: ignore[arg-type]
        except InputError as exc:
            raise InvalidReportError(_R.CORRUPT, detail=str(exc)) from None


def encrypt_match_key(
    match_key: int, public_keys: Sequence[HelperPublicKey], binding: Binding
) -> EncryptedMatchKey:
    """XOR-split a 64-bit ``match_key`` and seal ``mk_i ‖ mk_{i+1}`` to helper i (fresh shares)."""
    check_match_key(match_key)
    if [k.helper for k in public_keys] != [0, 1, 2] or len({k.suite for k in public_keys}) != 1:
        raise InputError("public_keys must be H1's, H2's and H3's, in that order, of one suite")
    shares = share_boolean(np.array([match_key], dtype=np.uint64), MATCH_KEY_BITS)
    parts = []
    for key, share in zip(public_keys, shares, strict=True):
        plaintext = share.left.astype("<u8").tobytes() + share.right.astype("<u8").tobytes()
        bound = info(Purpose.MATCH_KEY, FORMAT_VERSION, key.suite, key.key_id, key.helper, binding)
        parts.append(MatchKeyPart(key.helper, key.key_id, seal(key.public_key, plaintext, bound)))
    return EncryptedMatchKey(binding, public_keys[0].suite, tuple(parts))  # type: ignore[arg-type]


def check_match_key(key: object, name: str = "match_key") -> int:
    """``key`` as an int if it is a 64-bit unsigned integer; the InputError never shows the value."""
    if (
        isinstance(key, bool)
        or not isinstance(key, int | np.integer)
        or not 0 <= int(key) < 2**MATCH_KEY_BITS
    ):
        raise InputError(f"{name} must be an integer in [0, 2**{MATCH_KEY_BITS})")
    return int(key)


# ------------------------------------------------------- report collector


def encode_batch(
    public_key: HelperPublicKey,
    binding: Binding,
    match_keys: Sequence[EncryptedMatchKey],
    fields: np.ndarray,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> bytes:
    """Helper ``public_key.helper``'s upload batch (layout in the module docstring).

    ``match_keys[r]`` is report r's encrypted match key (its part for this
    helper is copied as is); ``fields`` is an (n,) :data:`FIELD_RECORD` array
    of this helper's components, in the same order. ``binding`` is the query
    the batch is for; the batch key is sealed to it.
    """
    helper, suite = public_key.helper, public_key.suite
    n = len(match_keys)
    integer("chunk_rows", chunk_rows, 1, 2**32 - 1)
    if fields.dtype != FIELD_RECORD or fields.shape != (n,):
        raise InputError(f"fields must be an ({n},) FIELD_RECORD array")
    if n >= 2**32:
        raise InputError("a batch holds fewer than 2**32 reports")
    records = _match_key_records(match_keys, helper, suite)
    site, collector, provider = binding.tags()
    head = _HEADER.pack(
        BATCH_MAGIC, FORMAT_VERSION, suite, helper, public_key.key_id, binding.epoch, site, collector,
        provider, n, chunk_rows,
    )  # fmt: skip
    batch_key = AESGCM.generate_key(bit_length=128)
    bound = info(Purpose.BATCH_KEY, FORMAT_VERSION, suite, public_key.key_id, helper, binding)
    out = [head, seal(public_key.public_key, batch_key, bound)]
    aead = AESGCM(batch_key)
    field_bytes = np.ascontiguousarray(fields).tobytes()
    width = records.dtype.itemsize
    records_bytes = records.tobytes()
    for j, start in enumerate(range(0, n, chunk_rows)):
        stop = min(start + chunk_rows, n)
        out.append(records_bytes[start * width : stop * width])
        plain = field_bytes[start * FIELD_RECORD.itemsize : stop * FIELD_RECORD.itemsize]
        out.append(aead.encrypt(_nonce(j), plain, head + struct.pack("<I", j)))
    return b"".join(out)


def _match_key_records(match_keys: Sequence[EncryptedMatchKey], helper: int, suite: Suite) -> np.ndarray:
    """Match-key records for ``helper``; each distinct EncryptedMatchKey object is encoded once."""
    dtype = match_key_record_dtype(suite)
    encoded: dict[int, bytes] = {}
    for emk in match_keys:
        if id(emk) not in encoded:
            if emk.suite is not suite:
                raise InputError(f"an encrypted match key uses {emk.suite.label}, the network {suite.label}")
            part, b = emk.parts[helper], emk.binding
            head = struct.pack("<BBBH", FORMAT_VERSION, helper, part.key_id, b.epoch)
            encoded[id(emk)] = head + b"".join(b.tags()) + part.sealed
    blob = b"".join([encoded[id(emk)] for emk in match_keys])
    return np.frombuffer(blob, dtype=dtype).copy() if blob else np.zeros(0, dtype=dtype)


def _nonce(chunk: int) -> bytes:
    return chunk.to_bytes(12, "big")


# ------------------------------------------------------------------ helper


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
        return SharedRows(*(getattr(r, f)[keep] for f in SharedRows.__dataclass_fields__))


def decode_batch(
    data: bytes,
    keys: KeyRegistry,
    binding: Binding,
    config: QueryConfig,
    *,
    policy: InvalidReportPolicy = InvalidReportPolicy.FAIL,
    oldest_epoch: int | None = None,
    workers: int | None = None,
) -> DecodedBatch:
    """Helper ``keys.helper``'s share columns from its upload batch, for a query bound to ``binding``.

    ``oldest_epoch`` (default: the query's epoch) is the oldest epoch this
    helper still accepts: an earlier report is EXPIRED_EPOCH, a later one
    that is not the query's epoch WRONG_EPOCH. ``workers``: processes for
    the HPKE opens (default: all cores). Raises InvalidReportError for a bad
    batch, or (policy FAIL) for the first invalid report; see the module
    docstring for the checks and their order.
    """
    oldest = (
        binding.epoch if oldest_epoch is None else integer("oldest_epoch", oldest_epoch, 0, binding.epoch)
    )
    data = bytes(data)
    header = _check_header(data, keys, binding, oldest)
    n, chunk_rows, key_id = header["n"], header["chunk_rows"], header["key_id"]
    suite = keys.suite
    record_dtype = match_key_record_dtype(suite)
    _check_length(data, suite, n, chunk_rows, record_dtype.itemsize)
    batch_key = keys.private_key(key_id)
    try:
        bound = info(Purpose.BATCH_KEY, FORMAT_VERSION, suite, key_id, keys.helper, binding)
        secret = open_sealed(
            batch_key, data[_HEADER.size : _HEADER.size + suite.sealed_length(_BATCH_KEY_BYTES)], bound
        )
    except InvalidReportError:
        raise InvalidReportError(_R.DECRYPTION_FAILED, detail="batch key") from None
    records, fields = _read_chunks(data, suite, n, chunk_rows, record_dtype, secret)

    reasons = np.zeros(n, dtype=np.uint8)
    site, collector, provider = binding.tags()
    _flag(reasons, records["version"] != FORMAT_VERSION, _R.CORRUPT)
    _flag(reasons, records["helper"] != keys.helper, _R.WRONG_HELPER)
    _flag(reasons, records["epoch"] < oldest, _R.EXPIRED_EPOCH)
    _flag(reasons, records["epoch"] != binding.epoch, _R.WRONG_EPOCH)
    _flag(reasons, records["site"] != site, _R.WRONG_SITE)
    _flag(reasons, records["report_collector"] != collector, _R.WRONG_REPORT_COLLECTOR)
    _flag(reasons, records["match_key_provider"] != provider, _R.WRONG_MATCH_KEY_PROVIDER)
    _flag(reasons, ~np.isin(records["key_id"], np.array(list(keys.keys), dtype=np.uint8)), _R.UNKNOWN_KEY_ID)
    range_detail = _check_field_ranges(reasons, fields, config)

    todo = np.flatnonzero(reasons == 0)
    infos = {k: info(Purpose.MATCH_KEY, FORMAT_VERSION, suite, k, keys.helper, binding) for k in keys.keys}
    plain, ok, distinct = open_many(
        keys.keys, infos, records["key_id"][todo], records["sealed"][todo], _MK_PLAINTEXT, workers
    )
    failed = np.zeros(n, dtype=bool)
    failed[todo[~ok]] = True
    _flag(reasons, failed, _R.DECRYPTION_FAILED)
    _flag(reasons, _duplicates(records, fields, reasons == 0), _R.DUPLICATE)

    if policy is InvalidReportPolicy.FAIL and reasons.any():
        first = int(np.flatnonzero(reasons)[0])
        reason = _R(int(reasons[first]))
        detail = range_detail.get(first, "") if reason is _R.OUT_OF_RANGE else ""
        raise InvalidReportError(reason, first, detail)

    match_key = np.zeros((n, 2), dtype=np.uint64)
    match_key[todo] = plain.view("<u8").reshape(-1, 2).astype(np.uint64)
    rows = _shared_rows(match_key, fields, reasons == 0, config)
    return DecodedBatch(rows, reasons, distinct)


def _check_header(data: bytes, keys: KeyRegistry, binding: Binding, oldest: int) -> dict[str, int]:
    if len(data) < len(BATCH_MAGIC) or (len(data) < _HEADER.size and data.startswith(BATCH_MAGIC)):
        raise InvalidReportError(_R.TRUNCATED, detail="batch header")
    if not data.startswith(BATCH_MAGIC):
        raise InvalidReportError(_R.CORRUPT, detail="not an upload batch")
    _, version, suite_id, helper, key_id, epoch, site, collector, provider, n, chunk_rows = (
        _HEADER.unpack_from(data)
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


def _check_length(data: bytes, suite: Suite, n: int, chunk_rows: int, record_width: int) -> None:
    """TRUNCATED (index: first incomplete report) or CORRUPT (trailing bytes)."""
    start = _HEADER.size + suite.sealed_length(_BATCH_KEY_BYTES)
    full, last = divmod(n, chunk_rows)
    per_row = record_width + FIELD_RECORD.itemsize
    expected = start + n * per_row + (full + (last > 0)) * _TAG
    if len(data) < expected:
        if len(data) < start:
            raise InvalidReportError(_R.TRUNCATED, detail="sealed batch key")
        chunk_bytes = chunk_rows * per_row + _TAG
        complete_chunks = (len(data) - start) // chunk_bytes
        raise InvalidReportError(_R.TRUNCATED, min(complete_chunks * chunk_rows, n))
    if len(data) > expected:
        raise InvalidReportError(_R.CORRUPT, detail="trailing bytes after the last chunk")


def _read_chunks(
    data: bytes, suite: Suite, n: int, chunk_rows: int, record_dtype: np.dtype, batch_key: bytes
) -> tuple[np.ndarray, np.ndarray]:
    aead = AESGCM(batch_key)
    head = data[: _HEADER.size]
    at = _HEADER.size + suite.sealed_length(_BATCH_KEY_BYTES)
    records, fields = [], []
    for j, start in enumerate(range(0, n, chunk_rows)):
        r = min(chunk_rows, n - start)
        records.append(np.frombuffer(data, dtype=record_dtype, count=r, offset=at))
        at += r * record_dtype.itemsize
        sealed_length = r * FIELD_RECORD.itemsize + _TAG
        try:
            plain = aead.decrypt(_nonce(j), data[at : at + sealed_length], head + struct.pack("<I", j))
        except InvalidTag:
            raise InvalidReportError(_R.DECRYPTION_FAILED, start, "field chunk") from None
        fields.append(np.frombuffer(plain, dtype=FIELD_RECORD))
        at += sealed_length
    if not records:
        return np.zeros(0, dtype=record_dtype), np.zeros(0, dtype=FIELD_RECORD)
    return np.concatenate(records), np.concatenate(fields)


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
        bad = (components >> np.uint64(width)).any(axis=1) if width < 64 else np.zeros(len(fields), bool)
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


def _shared_rows(
    match_key: np.ndarray, fields: np.ndarray, valid: np.ndarray, config: QueryConfig
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
    )
