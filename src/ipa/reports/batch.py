"""The report collector's upload batch for one helper.

The report collector secret-shares its own fields and, per helper, writes
one upload batch (:func:`encode_batch`): the user agents' sealed parts pass
through untouched, one per report; its own shares are sealed per batch (a
fresh 16-byte AES-128-GCM batch key, HPKE-sealed to the helper, then one
AEAD per chunk). The layout is in :mod:`ipa.reports.layout`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ipa._checks import integer
from ipa.crypto.binding import MAX_EPOCH, Binding, Purpose, info
from ipa.crypto.hpke import Suite, seal
from ipa.crypto.keys import HelperPublicKey
from ipa.errors import InputError
from ipa.reports.layout import (
    BATCH_HEADER,
    BATCH_MAGIC,
    FIELD_RECORD,
    FORMAT_VERSION,
    QUERY_TAIL,
    chunk_aad,
    chunk_nonce,
    match_key_record_dtype,
    pack_sites,
)
from ipa.reports.match_key import EncryptedMatchKey

__all__ = ["DEFAULT_CHUNK_ROWS", "encode_batch"]

DEFAULT_CHUNK_ROWS = 8192
"""Reports per chunk: about 1.3 MB of an X25519 batch, within one 4 MiB chunk of the upload."""


def encode_batch(
    public_key: HelperPublicKey,
    binding: Binding,
    match_keys: Sequence[EncryptedMatchKey],
    fields: np.ndarray,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    last_epoch: int | None = None,
) -> bytes:
    """Helper ``public_key.helper``'s upload batch (layout in :mod:`ipa.reports.layout`).

    ``match_keys[r]`` is report r's encrypted match key (its part for this
    helper is copied as is, with its own site and epoch); ``fields`` is an
    (n,) :data:`FIELD_RECORD` array of this helper's components, in the same
    order. ``binding`` is the query the batch is for (its querying site and
    first epoch; ``last_epoch`` defaults to that one); the batch key is
    sealed to it.
    """
    first = binding.epoch
    last = integer("last_epoch", first if last_epoch is None else last_epoch, first, MAX_EPOCH)
    helper, suite = public_key.helper, public_key.suite
    n = len(match_keys)
    integer("chunk_rows", chunk_rows, 1, 2**32 - 1)
    if fields.dtype != FIELD_RECORD or fields.shape != (n,):
        raise InputError(f"fields must be an ({n},) FIELD_RECORD array")
    if n >= 2**32:
        raise InputError("a batch holds fewer than 2**32 reports")
    records = _match_key_records(match_keys, helper, suite)
    site, collector, provider = binding.tags()
    head = BATCH_HEADER.pack(
        BATCH_MAGIC, FORMAT_VERSION, suite, helper, public_key.key_id, binding.epoch, site, collector,
        provider, n, chunk_rows,
    )  # fmt: skip
    batch_key = AESGCM.generate_key(bit_length=128)
    bound = info(Purpose.BATCH_KEY, FORMAT_VERSION, suite, public_key.key_id, helper, binding)
    sites = sorted({emk.binding.site for emk in match_keys})
    if len(sites) > 0xFFFF:
        raise InputError("a batch's reports come from at most 65535 sites")
    table = pack_sites(sites)
    tail = QUERY_TAIL.pack(last, len(sites), len(table)) + table
    out = [head, seal(public_key.public_key, batch_key, bound), tail]
    aad_head = head + tail
    aead = AESGCM(batch_key)
    field_bytes = np.ascontiguousarray(fields).tobytes()
    width = records.dtype.itemsize
    records_bytes = records.tobytes()
    for j, start in enumerate(range(0, n, chunk_rows)):
        stop = min(start + chunk_rows, n)
        out.append(records_bytes[start * width : stop * width])
        plain = field_bytes[start * FIELD_RECORD.itemsize : stop * FIELD_RECORD.itemsize]
        out.append(aead.encrypt(chunk_nonce(j), plain, chunk_aad(aad_head, j)))
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
