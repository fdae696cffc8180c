"""Byte layouts of the upload batch, shared by its encoder and its decoder.

All integers are little-endian; S is the length of one HPKE-sealed 16-byte
secret (enc + 16 + 16: 64 bytes for X25519, 1152 for ML-KEM-768+X25519).

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

Who writes and who reads these: :mod:`ipa.reports.batch` and
:mod:`ipa.reports.decode`; the package docstring says what each party learns.
"""

from __future__ import annotations

import struct

import numpy as np

from ipa.crypto.hpke import Suite

__all__ = [
    "BATCH_HEADER",
    "BATCH_KEY_BYTES",
    "BATCH_MAGIC",
    "FIELD_RECORD",
    "FORMAT_VERSION",
    "MATCH_KEY_PLAINTEXT",
    "TAG_BYTES",
    "chunk_aad",
    "chunk_nonce",
    "match_key_record_dtype",
]

FORMAT_VERSION = 1
"""The version of every format in :mod:`ipa.reports` (encrypted match key, batch, records)."""
BATCH_MAGIC = b"IPAB"
MATCH_KEY_PLAINTEXT = 16
"""A sealed match-key part opens to ``mk_i ‖ mk_{i+1}``: two u64."""
BATCH_KEY_BYTES = 16
TAG_BYTES = 16
BATCH_HEADER = struct.Struct("<4sBBBBH8s8s8sII")
"""The header up to the sealed batch key (42 bytes)."""

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
            ("sealed", "u1", (Suite(suite).sealed_length(MATCH_KEY_PLAINTEXT),)),
        ]
    )


def chunk_nonce(chunk: int) -> bytes:
    """The AES-GCM nonce of chunk ``chunk``: its index as 12 bytes big-endian."""
    return chunk.to_bytes(12, "big")


def chunk_aad(header: bytes, chunk: int) -> bytes:
    """The associated data of chunk ``chunk``: the 42-byte header and the chunk index."""
    return header + struct.pack("<I", chunk)
