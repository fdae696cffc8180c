"""Each helper's noised result shares on disk, next to its ledger, until retention expires.

A helper writes its share of a query's (noised) result before it votes to
commit (docs/reliability.md), so a committed query's result survives a crash
and restart of any helper. One file per query, ``DATA_DIR/results/<id>.share``,
mode 0600 in a 0700 directory (a query id that is not hex is
stored under its SHA-256, so no id can name a path), written to a temporary file, fsynced and
renamed, so a crash leaves either the whole file or none. The file holds
this helper's two replicated components of the sums after its noise was
added in shares (on a test network with ``--no-noise``, of the exact sums):
alone they reveal nothing; the collector needs the shares of the helpers.

Format: ``IPARES1\\n``, the number of sums n (u64 little-endian), then n
left words and n right words (u64 little-endian).
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from pathlib import Path

import numpy as np

from ipa.errors import IpaError
from ipa.mpc.replicated import AShares

__all__ = ["ResultStore"]

_MAGIC = b"IPARES1\n"
_ID = re.compile(r"^[0-9a-f]{1,64}$")


def _name(query_id: str) -> str:
    """The file name of a query's share: the id itself if it is hex (H1's ids are), else its SHA-256."""
    if _ID.match(query_id):
        return f"{query_id}.share"
    return hashlib.sha256(query_id.encode()).hexdigest() + ".share"


class ResultStore:
    """The directory of one helper's durable result shares."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        self.directory = directory

    def _path(self, query_id: str) -> Path:
        return self.directory / _name(query_id)

    def put(self, query_id: str, shares: AShares) -> None:
        """Write the share durably (atomically, 0600) before returning."""
        left, right = (np.ascontiguousarray(a, dtype="<u8") for a in (shares.left, shares.right))
        data = _MAGIC + struct.pack("<Q", len(left)) + left.tobytes() + right.tobytes()
        path = self._path(query_id)
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def get(self, query_id: str) -> AShares:
        """The stored share; IpaError if there is none or it is damaged."""
        try:
            data = self._path(query_id).read_bytes()
        except FileNotFoundError:
            raise IpaError(f"query {query_id} has no stored result share here") from None
        if data[: len(_MAGIC)] != _MAGIC or len(data) < len(_MAGIC) + 8:
            raise IpaError(f"the stored result share of query {query_id} is damaged")
        (n,) = struct.unpack_from("<Q", data, len(_MAGIC))
        if len(data) != len(_MAGIC) + 8 + 16 * n:
            raise IpaError(f"the stored result share of query {query_id} is damaged")
        words = np.frombuffer(data, "<u8", offset=len(_MAGIC) + 8)
        return AShares(words[:n].astype(np.uint64), words[n:].astype(np.uint64))

    def delete(self, query_id: str) -> None:
        self._path(query_id).unlink(missing_ok=True)

    def keep_only(self, query_ids: set[str]) -> list[str]:
        """Delete every stored share (and leftover temporary file) not of ``query_ids``."""
        kept = {_name(q) for q in query_ids}
        gone = []
        for path in self.directory.iterdir():
            if path.name not in kept:
                path.unlink(missing_ok=True)
                gone.append(path.stem)
        return gone
