import os
import subprocess
import sys

import pytest

from ipa_helper.allocator import limit_arenas

_PROBE = "from ipa_helper.allocator import limit_arenas; print(limit_arenas())"


def _probe(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_takes_the_arena_limit_in_a_fresh_process():
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert _probe(env) == "True"


def test_an_operators_malloc_arena_max_wins():
    assert _probe({**os.environ, "MALLOC_ARENA_MAX": "4"}) == "False"


def test_at_least_one_arena():
    with pytest.raises(ValueError, match="at least 1"):
        limit_arenas(0)
