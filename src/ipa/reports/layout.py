"""Byte layouts of the upload batch, shared by its encoder and its decoder.

All integers are little-endian; S is the length of one HPKE-sealed 16-byte
secret (enc + 16 + 16: 64 bytes for X25519, 1152 for ML-KEM-768+X25519).

Upload batch for helper i, version 2
------------------------------------
Header, 42 + S + 8 + T bytes::

    0   4   magic b"IPAB"
    4   1   format version (2)
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
    .   2   last epoch of the query (the first is at offset 8)
    .   2   m, the number of sites the reports were made on
    .   4   T, the site table's length in bytes
    .   T   the site table: m entries, each a length a (1 byte) and a UTF-8 name

then ``ceil(n / c)`` chunks; chunk j holds r = min(c, n − j·c) reports::

    r × 29+S   match-key records, in the clear (below)
    r×66 + 16  AES-128-GCM under the batch key of r field records,
               nonce = j as 12 bytes big-endian,
               AAD = header[0:42] ‖ last epoch ‖ m ‖ T ‖ site table ‖ j (4 bytes)

The site table names every site a report's site tag refers to: a helper
needs the name to rebuild the ``info`` its part was sealed with. A report
whose tag is in no entry is WRONG_SITE; a wrong name only makes the
report's part fail to open.

Match-key record (29 + S bytes; 93 for X25519), the user agent's part i::

    0   1   format version (2)
    1   1   helper index i
    2   1   key id
    3   2   epoch the match key was made in
    5   8   site tag (where it was made: an entry of the site table)
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
    "QUERY_TAIL",
    "TAG_BYTES",
    "chunk_aad",
    "chunk_nonce",
    "match_key_record_dtype",
    "pack_sites",
    "unpack_sites",
]

FORMAT_VERSION = 2
"""The version of every format in :mod:`ipa.reports` (encrypted match key, batch, records)."""
BATCH_MAGIC = b"IPAB"
MATCH_KEY_PLAINTEXT = 16
"""A sealed match-key part opens to ``mk_i ‖ mk_{i+1}``: two u64."""
BATCH_KEY_BYTES = 16
TAG_BYTES = 16
BATCH_HEADER = struct.Struct("<4sBBBBH8s8s8sII")
"""The header up to the sealed batch key (42 bytes)."""
QUERY_TAIL = struct.Struct("<HHI")
"""After the sealed batch key: the query's last epoch, the number of sites and the site table's
length in bytes (8 bytes)."""

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
    """The associated data of chunk ``chunk``: the header (42 bytes, then the query tail and site
    table) and the chunk index."""
    return header + struct.pack("<I", chunk)


def pack_sites(sites: list[str]) -> bytes:
    """The site table: each name as a length byte and its UTF-8 bytes."""
    return b"".join(bytes([len(d)]) + d for d in (site.encode("utf-8") for site in sites))


def unpack_sites(data: bytes, at: int, count: int) -> tuple[list[str], int]:
    """``count`` names of a site table starting at ``at``, and the offset after it.

    ValueError if the table is truncated or a name is not UTF-8.
    """
    sites = []
    for _ in range(count):
        if at >= len(data) or at + 1 + data[at] > len(data):
            raise ValueError("truncated site table")
        sites.append(data[at + 1 : at + 1 + data[at]].decode("utf-8"))
        at += 1 + data[at]
    return sites, at
