import os
import subprocess
import sys

import pytest

from ipa_helper.allocator import keep_freed_memory, limit_arenas

_PROBE = "from ipa_helper.allocator import limit_arenas; print(limit_arenas())"

# A query thread's 64 MiB array, as a checkpoint makes them: is it in glibc's main heap ([heap] in
# /proc/self/maps, reused when freed) or a mapping of its own (its pages zeroed again by the kernel)?
_WHERE = """
import sys, threading
import numpy as np
from ipa_helper.allocator import tune_malloc
tuned = tune_malloc() if sys.argv[1] == "tune" else None
def heap():
    for line in open("/proc/self/maps"):
        if line.rstrip().endswith("[heap]"):
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            return lo, hi
    return 0, 0
out = []
def query():
    a = np.empty(1 << 23, np.uint64)  # 64 MiB
    lo, hi = heap()
    out.append("heap" if lo <= a.ctypes.data < hi else "mapped")
thread = threading.Thread(target=query)
thread.start()
thread.join()
print(tuned, out[0])
"""

# A query thread frees 1.25 GiB of arrays (more than glibc's largest trim threshold before): resident
# MiB above the start, after the free and after release_freed_memory (the helper's call when its
# last query ends).
_KEPT = """
import sys, threading
import numpy as np
from ipa_helper.allocator import release_freed_memory, tune_malloc
tuned = tune_malloc() if sys.argv[1] == "tune" else None
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) >> 10
start = rss()
def query():
    arrays = [np.ones(1 << 25, np.uint64) for _ in range(5)]  # 256 MiB each, every page touched
    del arrays
thread = threading.Thread(target=query)
thread.start()
thread.join()
freed = rss() - start
release_freed_memory()
print(tuned, freed, rss() - start)
"""

# Does numpy still ask for transparent huge pages for large arrays?
_PAGES = """
import numpy as np
from ipa_helper.allocator import tune_malloc
print(tune_malloc(), np._core.multiarray._get_madvise_hugepage())
"""

_GLIBC = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")


def _run(code: str, env: dict[str, str], *args: str) -> str:
    command = [sys.executable, "-c", code, *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _clean_env() -> dict[str, str]:
    glibc = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
    return {k: v for k, v in os.environ.items() if k not in glibc}


@_GLIBC
def test_glibc_takes_the_arena_limit_in_a_fresh_process():
    assert _run(_PROBE, _clean_env()) == "True"


def test_an_operators_malloc_arena_max_wins():
    assert _run(_PROBE, {**os.environ, "MALLOC_ARENA_MAX": "4"}) == "False"


def test_at_least_one_arena():
    with pytest.raises(ValueError, match="at least 1"):
        limit_arenas(0)


@_GLIBC
def test_a_query_threads_large_array_comes_from_the_heap_once_tuned():
    # glibc's defaults: a fresh mapping per large array (this is what the setting changes)
    assert _run(_WHERE, _clean_env(), "default") == "None mapped"
    assert _run(_WHERE, _clean_env(), "tune") == "True heap"


@_GLIBC
def test_an_operators_malloc_tunables_win():
    env = {**_clean_env(), "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4194304"}
    assert _run(_WHERE, env, "tune") == "False mapped"
    assert _run(_WHERE, {**_clean_env(), "MALLOC_TRIM_THRESHOLD_": "131072"}, "tune").startswith("False")


def test_thresholds_are_not_negative():
    with pytest.raises(ValueError, match=">= 0"):
        keep_freed_memory(-1)


@_GLIBC
def test_freed_memory_is_kept_through_a_query_and_given_back_after():
    tuned, freed, released = _run(_KEPT, _clean_env(), "tune").split()
    assert tuned == "True"
    assert int(freed) > 1200  # kept: the next array reuses these pages, no zeroing
    assert int(released) < 100
    # glibc's defaults: the array was a mapping of its own, gone (and its pages zeroed anew) at once
    default, freed, _ = _run(_KEPT, _clean_env(), "default").split()
    assert default == "None" and int(freed) < 100


@_GLIBC
def test_numpy_is_told_not_to_ask_for_huge_pages():
    env = {k: v for k, v in _clean_env().items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    assert _run(_PAGES, env) == "True False"


def test_an_operators_numpy_huge_page_setting_wins():
    assert _run(_PAGES, {**_clean_env(), "NUMPY_MADVISE_HUGEPAGE": "1"}) == "False True"
