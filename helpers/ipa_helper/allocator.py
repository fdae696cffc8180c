"""The helper process's malloc arenas: at most two, so memory one thread frees another reuses.

glibc gives each thread that allocates while another holds an arena an arena
of its own, up to eight per core. In a helper the MPC runs in a query
thread while gRPC's threads receive the upload and the peers' messages and
turn them into arrays; memory freed in one arena is not reused by
allocations in another, so the process's resident memory grows well beyond
what is live. With two arenas the query thread and the gRPC threads share
their freed memory (``bench/e2e.py``, README *Benchmarks*: the peak per
helper at 10^5 and 10^6 events, and the same times).

:func:`limit_arenas` sets ``M_ARENA_MAX`` with ``mallopt`` before the helper
starts a thread. An operator's ``MALLOC_ARENA_MAX`` in the environment
(read by glibc itself) wins; where there is no glibc ``mallopt`` (macOS,
musl), nothing changes. Other glibc settings were measured and left alone:
a fixed ``M_MMAP_THRESHOLD`` (128 KiB or 4 MiB) lowers the peak as much
but doubles the time of the MPC phases (every large array is then a fresh
mapping whose pages the kernel must zero).
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["HELPER_ARENAS", "limit_arenas"]

HELPER_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def limit_arenas(arenas: int = HELPER_ARENAS) -> bool:
    """Cap this process's malloc arenas at ``arenas``; True if glibc took the setting.

    Call it before any thread starts. False if ``MALLOC_ARENA_MAX`` is set
    (glibc has applied it) or this C library has no ``mallopt``.
    """
    if arenas < 1:
        raise ValueError(f"arenas must be at least 1, got {arenas}")
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))
