"""Three-party test harness: share plaintext inputs, run a protocol, reconstruct outputs."""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from ipa.mpc.memory import RunResult, run_three
from ipa.mpc.sharing import reconstruct


def per_party(*shared: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Regroup ``k`` lists of three parties' shares into three tuples of ``k`` shares."""
    return [tuple(s[i] for s in shared) for i in range(3)]


def run(protocol: Callable[..., Any], *shared: Sequence[Any]) -> RunResult:
    """Run ``protocol(ctx, *shares_of_party)`` on all three parties."""
    return run_three(lambda ctx, args: protocol(ctx, *args), per_party(*shared))


def opened(result: RunResult) -> np.ndarray | list[np.ndarray]:
    """Reconstruct a protocol's output: one share column, or a list of them."""
    first = result.outputs[0]
    if isinstance(first, list | tuple):
        return [reconstruct([o[k] for o in result.outputs]) for k in range(len(first))]
    return reconstruct(result.outputs)


def words(width: int, max_rows: int = 40) -> st.SearchStrategy[np.ndarray]:
    """Arrays of unsigned ``width``-bit values, biased towards 0, the maximum and repeats."""
    top = (1 << width) - 1
    value = st.one_of(st.integers(0, top), st.sampled_from([0, 1, top, top - 1]))
    dtype = np.uint64 if width > 32 else np.uint32 if width > 16 else np.uint16 if width > 8 else np.uint8
    return st.lists(value, max_size=max_rows).map(lambda v: np.array(v, dtype=dtype))
