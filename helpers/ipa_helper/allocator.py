"""The helper process's memory: one arena, freed arrays kept for the query's reuse, small pages.

glibc gives each thread that allocates while another holds an arena an arena
of its own, up to eight per core. In a helper the MPC runs in a query
thread while gRPC's threads receive the upload and the peers' messages and
turn them into arrays; memory freed in one arena is not reused by
allocations in another, so the process's resident memory grows well beyond
what is live. With few arenas the query thread and the gRPC threads share
their freed memory (``bench/e2e.py``, README *Benchmarks*: the peak per
helper at 10^5 and 10^6 events, and the same times).

The MPC's large numpy temporaries (a checkpoint's triples, a sort pass's
columns: megabytes to hundreds of MiB each) are, by glibc's defaults, each a
fresh ``mmap`` returned to the kernel when freed (allocations above the
dynamic mmap threshold, at most 32 MiB; and a thread's own arena cannot hold
more than 64 MiB in one piece), so the kernel zeroes every page of every one
of them again: in malicious mode about a fifth of the query's CPU time at
10^5 events, and most of it at 10^6 (``docs/malicious.md`` §9.3, §9.6).
:func:`tune_malloc` therefore

- makes the process use **one arena** (glibc's main heap, which grows
  without that 64 MiB limit);
- serves every allocation below :data:`MMAP_THRESHOLD` (2 GiB) from it and
  never trims its top while a query runs, so a freed array's pages are
  reused, not zeroed again, by the next one; the helper gives them back
  to the kernel when its last running query ends
  (:func:`release_freed_memory`);
- turns off numpy's ``madvise(MADV_HUGEPAGE)`` on large arrays: each
  transparent huge page is 2 MiB the kernel must find (compacting memory
  when none is free) and zero at the first touch, and on this machine that
  cost more system time than the 4 KiB pages it saves (§9.6).

Measured in memory, the verified sort of 10^6 rows: 338 s (354 s of system
time) with §9.3's settings and numpy's huge pages, 111 s (37 s) as tuned now (§9.6).

One thing still hands freed memory back while a query runs: protobuf's
Python runtime (upb) calls ``malloc_trim(0)`` after every 10,000 frees of
its messages' memory, and each call returns all of the heap's free pages
(about a gigabyte at 10^6 events) to be faulted in and zeroed again. The
peer transport keeps those frees few by streaming in chunks of 4 MiB
(:data:`ipa_rpc.CHUNK_BYTES`), not 1 MiB: at 10^6 events, malicious, the
page faults per helper fell from 1.7–2.0 to 0.9–1.2 million (about half a
million of them the first touch of the peak), and the CPU from 115 to 104
seconds (``docs/malicious.md`` §9.8).

An operator's own settings win: ``MALLOC_ARENA_MAX``,
``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or any
``glibc.malloc`` tunable in ``GLIBC_TUNABLES`` (read by glibc itself), and
numpy's ``NUMPY_MADVISE_HUGEPAGE``, leave the corresponding settings alone;
where there is no glibc ``mallopt`` (macOS, musl), the heap is not changed.
A fixed *low* ``M_MMAP_THRESHOLD`` (128 KiB or 4 MiB, every large array a
fresh mapping) was measured before and doubled the time of the MPC phases.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

import numpy as np

__all__ = [
    "HELPER_ARENAS",
    "MMAP_THRESHOLD",
    "TRIM_THRESHOLD",
    "keep_freed_memory",
    "limit_arenas",
    "release_freed_memory",
    "small_pages",
    "tune_malloc",
]

HELPER_ARENAS = 1
"""One arena: the main heap, which can hold arrays of any size (a thread's arena holds at most 64 MiB)."""
MMAP_THRESHOLD = (1 << 31) - 1
"""Allocations below this come from the heap (glibc: at most 32 MiB); the largest ``mallopt`` takes."""
TRIM_THRESHOLD = -1
"""``M_TRIM_THRESHOLD`` that never trims the heap's free top (glibc: 128 KiB, rising to 64 MiB)."""

# glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def _libc(name: str, *argtypes: type) -> Callable[..., int] | None:
    """The C library's function ``name`` returning an int, or None where it has none."""
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = list(argtypes), ctypes.c_int
    return function


def _mallopt() -> Callable[..., int] | None:
    return _libc("mallopt", ctypes.c_int, ctypes.c_int)


def _operator_set(*variables: str) -> bool:
    """True if the environment already configures glibc's malloc here (glibc has applied it)."""
    return any(v in os.environ for v in variables) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")


def limit_arenas(arenas: int = HELPER_ARENAS) -> bool:
    """Cap this process's malloc arenas at ``arenas``; True if glibc took the setting.

    Call it before any thread starts. False if ``MALLOC_ARENA_MAX`` or a
    ``glibc.malloc`` tunable is set (glibc has applied it) or this C library
    has no ``mallopt``.
    """
    if arenas < 1:
        raise ValueError(f"arenas must be at least 1, got {arenas}")
    mallopt = _mallopt()
    if _operator_set("MALLOC_ARENA_MAX") or mallopt is None:
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD) -> bool:
    """Serve allocations below ``mmap_threshold`` bytes from the heap and never trim it;
    True if glibc took both settings.

    Freed memory then stays in the process until :func:`release_freed_memory`.
    False if the operator set either (``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_TRIM_THRESHOLD_``, a ``glibc.malloc`` tunable), if this C library
    has no ``mallopt``, or if it refuses the threshold (glibc before 2.35 caps
    it at 32 MiB).
    """
    if mmap_threshold < 0:
        raise ValueError(f"the mmap threshold must be >= 0, got {mmap_threshold}")
    mallopt = _mallopt()
    if _operator_set("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_") or mallopt is None:
        return False
    if not mallopt(_M_MMAP_THRESHOLD, mmap_threshold):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def release_freed_memory() -> bool:
    """Give the heap's free pages back to the kernel (glibc's ``malloc_trim(0)``); True if any went.

    The helper calls it when its last running query ends, so memory kept for
    reuse within a query is not held between queries.
    """
    trim = _libc("malloc_trim", ctypes.c_size_t)
    return trim is not None and bool(trim(0))


def small_pages() -> bool:
    """Stop numpy asking for transparent huge pages for its arrays; True if numpy took the setting.

    False if the operator set ``NUMPY_MADVISE_HUGEPAGE`` (numpy has applied it)
    or this numpy has no switch for it.
    """
    multiarray = getattr(getattr(np, "_core", None), "multiarray", None)
    switch = getattr(multiarray, "_set_madvise_hugepage", None)
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ or switch is None:
        return False
    switch(False)
    return True


def tune_malloc() -> bool:
    """The helper's settings: :func:`limit_arenas`, :func:`keep_freed_memory` and
    :func:`small_pages`; True if all three took.

    Call it before any thread starts (``ipa-helper`` and the in-memory benches do).
    """
    arenas = limit_arenas()
    kept = keep_freed_memory()
    return small_pages() and kept and arenas
