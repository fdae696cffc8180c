"""Receipts: what a collector needs to fetch a query's result later (``ipa fetch``).

``ipa query`` writes one as soon as the leader has accepted the query, so a
query whose client died or was interrupted can still be fetched once the
helpers have committed it. A receipt holds the query id and the collector's
three per-helper tokens (secrets: whoever holds them can fetch the result
shares), so it is written 0600 in a 0700 directory:
``STATE_DIR/receipts/<query id>.json``. ``STATE_DIR`` defaults to
``$XDG_STATE_HOME/ipa``, else ``~/.local/state/ipa``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ipa.errors import InputError

__all__ = ["default_state_dir", "read_receipt", "write_receipt"]

_ID = re.compile(r"^[0-9a-f]{1,64}$")


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/ipa``, or ``~/.local/state/ipa``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ipa"


def _path(state_dir: Path, query_id: str) -> Path:
    if not _ID.match(query_id):
        raise InputError(f"not a query id: {query_id!r}")
    return state_dir / "receipts" / f"{query_id}.json"


def write_receipt(state_dir: Path, query_id: str, network: Path, tokens: list[bytes]) -> Path:
    """Write the receipt of ``query_id`` (0600, atomically); return its path."""
    path = _path(state_dir, query_id)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = json.dumps(
        {"query_id": query_id, "network": str(network.resolve()), "tokens": [t.hex() for t in tokens]}
    )
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    return path


def read_receipt(state_dir: Path, query_id: str) -> list[bytes]:
    """The collector's three tokens for ``query_id``; InputError if there is no usable receipt."""
    path = _path(state_dir, query_id)
    try:
        receipt = json.loads(path.read_text())
        tokens = [bytes.fromhex(t) for t in receipt["tokens"]]
    except FileNotFoundError:
        raise InputError(f"no receipt for query {query_id} in {path.parent} (see --state-dir)") from None
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{path} is not a receipt") from None
    if len(tokens) != 3 or receipt.get("query_id") != query_id:
        raise InputError(f"{path} is not a receipt of query {query_id}")
    return tokens
