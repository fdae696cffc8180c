"""Opening many HPKE messages at once: identical ones once, the rest on every core.

A user agent returns the same encrypted match key to a site for the whole
epoch, so a batch holds many copies of each ciphertext. :func:`open_many`
opens each distinct ``(key id, ciphertext)`` once and fans the plaintext
back out to every row.

``cryptography``'s HPKE does not release the GIL (two threads open no faster
than one; measured with 50.0.2), so with W workers the distinct messages are
split in W parts: this process opens one, and W − 1 child processes
(``python -m ipa.crypto.opener``, fed through a pipe) open the others. Own
children rather than ``multiprocessing``: nothing is forked from a process
that may run threads (gRPC), and the caller's ``__main__`` is never
re-imported, so library users need no ``if __name__ == "__main__"`` guard.
A child costs about 0.2 s to start, so batches with fewer than
``MIN_PARALLEL`` distinct messages are opened here only; if a child fails,
its part is opened here too. Children get the private keys through their
stdin and exit when done.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ipa.crypto.hpke import PrivateKey, Suite, open_sealed
from ipa.errors import InvalidReportError

__all__ = ["MIN_PARALLEL", "Opener", "group_identical", "open_many", "row_hash"]

MIN_PARALLEL = 4096
"""Fewest distinct messages worth a process pool."""

Opener = Callable[
    [Mapping[int, PrivateKey], Mapping[int, bytes], np.ndarray, np.ndarray, int],
    tuple[np.ndarray, np.ndarray, int],
]
"""What opens a batch of messages: :func:`open_many`'s signature without ``workers``.

The default is :func:`open_many` in this process and its children; a helper
spread over a cluster passes its own (``ipa_helper.cluster``).
"""


def open_many(
    keys: Mapping[int, PrivateKey],
    infos: Mapping[int, bytes],
    key_ids: np.ndarray,
    sealed: np.ndarray,
    plaintext_length: int,
    workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Open row ``r`` of ``sealed`` with ``keys[key_ids[r]]`` and ``infos[key_ids[r]]``.

    ``key_ids`` is (n,) uint8; ``sealed`` is (n, L) uint8, one fixed-length
    message per row. Returns ``(plaintexts, ok)``: (n, plaintext_length)
    uint8 (zeros where opening failed) and an (n,) bool mask. A key id
    missing from ``keys`` fails like a bad ciphertext; callers that want a
    distinct error check key ids first. ``workers``: processes to use
    (default: every core; 1 opens in this process). The third value
    returned is the number of distinct messages opened.
    """
    n = len(key_ids)
    plaintexts = np.zeros((n, plaintext_length), dtype=np.uint8)
    ok = np.zeros(n, dtype=bool)
    if n == 0:
        return plaintexts, ok, 0
    key_ids = np.asarray(key_ids, dtype=np.uint8)[:, None]
    first, inverse = group_identical(key_ids, sealed)  # no joined copy of all n rows
    distinct = np.ascontiguousarray(np.concatenate([key_ids[first], sealed[first]], axis=1))
    del first
    workers = (os.cpu_count() or 1) if workers is None else max(int(workers), 1)
    if workers == 1 or len(distinct) < MIN_PARALLEL:
        opened, good = _open_rows(keys, infos, distinct, plaintext_length)
    else:
        opened, good = _open_in_pool(keys, infos, distinct, plaintext_length, workers)
    for s in _slices(n):  # without an (n, plaintext_length) temporary
        plaintexts[s] = opened[inverse[s]]
        ok[s] = good[inverse[s]]
    return plaintexts, ok, len(distinct)


def group_identical(*parts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups of identical rows: ``(first, inverse)``.

    Row r is the concatenation of row r of every part (each an (n, w_i)
    uint8 array). ``first[g]`` is the lowest row index of group g and
    ``inverse[r]`` the group of row r. Rows are grouped by a 64-bit linear
    hash of their words (a fast sort of n words) and the groups are then
    checked byte for byte; if two different rows share a hash (chance, or a
    crafted batch), the exact but slower byte-wise grouping is used instead.
    """
    n = len(parts[0])
    _, first, inverse = np.unique(row_hash(*parts), return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    if all((part[s] == part[first[inverse[s]]]).all() for part in parts for s in _slices(n)):
        return first, inverse
    rows = np.ascontiguousarray(np.concatenate(parts, axis=1))
    _, first, inverse = np.unique(
        rows.view(np.dtype((np.void, rows.shape[1]))).ravel(), return_index=True, return_inverse=True
    )
    return first, inverse.ravel()


def row_hash(*parts: np.ndarray) -> np.ndarray:
    """(n,) uint64: a linear hash of the words of row r of every part (each an (n, w_i) uint8 array).

    Identical rows hash alike; different rows may collide (callers check).
    """
    n = len(parts[0])
    hashed = np.zeros(n, dtype=np.uint64)
    for s in _slices(n):  # padded words for one slice of rows at a time, not for all n
        offset = 0
        for part in parts:
            width = part.shape[1]
            words = np.zeros((s.stop - s.start, -(-width // 8) * 8), dtype=np.uint8)
            words[:, :width] = part[s]
            words = words.view("<u8")
            hashed[s] += words @ _MULTIPLIERS[offset : offset + words.shape[1]]
            offset += words.shape[1]
    return hashed


def _multipliers(count: int) -> np.ndarray:
    """Fixed odd 64-bit constants (splitmix64 outputs) for the row hash."""
    out, state, m = [], 0, 2**64 - 1
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & m
        z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        out.append((z ^ (z >> 31)) | 1)
    return np.array(out, dtype=np.uint64)


_MULTIPLIERS = _multipliers(256)


def _slices(n: int, step: int = 1 << 16) -> list[slice]:
    return [slice(start, min(start + step, n)) for start in range(0, n, step)]


def _open_rows(
    keys: Mapping[int, PrivateKey], infos: Mapping[int, bytes], rows: np.ndarray, plaintext_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Open each ``key id ‖ sealed`` row; (plaintexts, ok)."""
    out = np.zeros((len(rows), plaintext_length), dtype=np.uint8)
    ok = np.zeros(len(rows), dtype=bool)
    blob = rows.tobytes()
    width = rows.shape[1]
    for r in range(len(rows)):
        key_id = blob[r * width]
        key, info = keys.get(key_id), infos.get(key_id)
        if key is None or info is None:
            continue
        try:
            plain = open_sealed(key, blob[r * width + 1 : (r + 1) * width], info)
        except InvalidReportError:
            continue
        if len(plain) == plaintext_length:
            out[r] = np.frombuffer(plain, dtype=np.uint8)
            ok[r] = True
    return out, ok


def _open_in_pool(
    keys: Mapping[int, PrivateKey],
    infos: Mapping[int, bytes],
    rows: np.ndarray,
    plaintext_length: int,
    workers: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Open ``rows`` split over this process and ``workers - 1`` children."""
    raw_keys = {k: (int(v.suite), v.raw) for k, v in keys.items()}
    parts = np.array_split(rows, workers)
    package_root = str(Path(__file__).resolve().parents[2])
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    }
    children = []
    for part in parts[1:]:
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "ipa.crypto.opener"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        except OSError:
            child = None
        task = pickle.dumps((raw_keys, dict(infos), part.tobytes(), part.shape[1], plaintext_length))
        children.append((child, task))
    with ThreadPoolExecutor(max(len(children), 1)) as pool:
        replies = [pool.submit(_talk, child, task) for child, task in children]
        results = [_open_rows(keys, infos, parts[0], plaintext_length)]  # this process's part, meanwhile
        for part, reply in zip(parts[1:], replies, strict=True):
            answer = reply.result()
            if answer is None:
                results.append(_open_rows(keys, infos, part, plaintext_length))
            else:
                opened = np.frombuffer(answer[0], dtype=np.uint8).reshape(-1, plaintext_length)
                results.append((opened, np.frombuffer(answer[1], dtype=bool)))
    return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])


def _talk(child: subprocess.Popen[bytes] | None, task: bytes) -> tuple[bytes, bytes] | None:
    """Send ``task`` to a child and return its answer; None if it failed.

    Plain blocking reads and writes (which release the GIL) rather than
    ``communicate``, whose small select-loop steps each wait for the GIL
    that this process's own opening holds.
    """
    if child is None:
        return None
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write(task)
        child.stdin.close()
        out = child.stdout.read()
        child.stdout.close()
    except OSError:
        child.kill()
        out = b""
    if child.wait() != 0:
        return None
    try:
        answer = pickle.loads(out)
    except Exception:
        return None
    return answer if isinstance(answer, tuple) and len(answer) == 2 else None


def _serve() -> None:
    """A child's whole life: read one task from stdin, write the opened part to stdout."""
    raw_keys, infos, blob, width, plaintext_length = pickle.loads(sys.stdin.buffer.read())
    keys = {k: PrivateKey(Suite(s), raw) for k, (s, raw) in raw_keys.items()}
    rows = np.frombuffer(blob, dtype=np.uint8).reshape(-1, width)
    opened, ok = _open_rows(keys, infos, rows, plaintext_length)
    sys.stdout.buffer.write(pickle.dumps((opened.tobytes(), ok.tobytes())))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    _serve()
