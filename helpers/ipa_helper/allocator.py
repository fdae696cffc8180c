"""The helper process's malloc: one arena, and freed large arrays kept in the heap for reuse.

glibc gives each thread that allocates while another holds an arena an arena
of its own, up to eight per core. In a helper the MPC runs in a query
thread while gRPC's threads receive the upload and the peers' messages and
turn them into arrays; memory freed in one arena is not reused by
allocations in another, so the process's resident memory grows well beyond
what is live. With few arenas the query thread and the gRPC threads share
their freed memory (``bench/e2e.py``, README *Benchmarks*: the peak per
helper at 10^5 and 10^6 events, and the same times).

The MPC's large numpy temporaries (a checkpoint's triples, a sort pass's
columns: megabytes to tens of MiB each) are, by glibc's defaults, each a
fresh ``mmap`` returned to the kernel when freed (allocations above the
dynamic mmap threshold, at most 32 MiB; and a thread's own arena cannot hold
more than 64 MiB in one piece), so the kernel zeroes every page of every one
of them again: in malicious mode about a fifth of the query's CPU time
(``docs/malicious.md`` §9.3). :func:`tune_malloc` therefore makes the
process use **one arena** (glibc's main heap, which grows without that 64 MiB
limit), serves allocations up to :data:`MMAP_THRESHOLD` from it and trims its
top only above :data:`TRIM_THRESHOLD` of free memory, so a freed array's
pages are reused, not zeroed again, by the next one. Measured in memory at
10^5 events: the malicious query's CPU time about −17 % and the semi-honest
query's about −20 %, the peak RSS a little lower in both (§9.3).

An operator's own settings win: ``MALLOC_ARENA_MAX``,
``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or any
``glibc.malloc`` tunable in ``GLIBC_TUNABLES`` (read by glibc itself) leave
the corresponding settings alone; where there is no glibc ``mallopt`` (macOS,
musl), nothing changes. A fixed *low* ``M_MMAP_THRESHOLD`` (128 KiB or 4 MiB,
every large array a fresh mapping) was measured before and doubled the time
of the MPC phases.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

__all__ = [
    "HELPER_ARENAS",
    "MMAP_THRESHOLD",
    "TRIM_THRESHOLD",
    "keep_freed_memory",
    "limit_arenas",
    "tune_malloc",
]

HELPER_ARENAS = 1
"""One arena: the main heap, which can hold arrays of any size (a thread's arena holds at most 64 MiB)."""
MMAP_THRESHOLD = 256 << 20
"""Allocations up to this size come from the heap (glibc's default: at most 32 MiB)."""
TRIM_THRESHOLD = 1 << 30
"""The heap's free top goes back to the kernel only above this size (glibc: 128 KiB, rising to 64 MiB)."""

# glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def _mallopt() -> Callable[[int, int], int] | None:
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


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


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Serve allocations up to ``mmap_threshold`` bytes from the heap and trim it only above
    ``trim_threshold``; True if glibc took both settings.

    False if the operator set either (``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_TRIM_THRESHOLD_``, a ``glibc.malloc`` tunable), if this C library
    has no ``mallopt``, or if it refuses the threshold (glibc before 2.35 caps
    it at 32 MiB).
    """
    if mmap_threshold < 0 or trim_threshold < 0:
        raise ValueError(f"thresholds must be >= 0, got {mmap_threshold} and {trim_threshold}")
    mallopt = _mallopt()
    if _operator_set("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_") or mallopt is None:
        return False
    if not mallopt(_M_MMAP_THRESHOLD, mmap_threshold):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))


def tune_malloc() -> bool:
    """The helper's settings: :func:`limit_arenas` and :func:`keep_freed_memory`; True if both took.

    Call it before any thread starts (``ipa-helper`` and the in-memory benches do).
    """
    arenas = limit_arenas()
    return keep_freed_memory() and arenas
