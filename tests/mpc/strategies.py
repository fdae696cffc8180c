"""Hypothesis strategies shared by the MPC tests (the three-party world is :mod:`ipa.mpc.testing`)."""

import numpy as np
from hypothesis import strategies as st


def words(width: int, max_rows: int = 40) -> st.SearchStrategy[np.ndarray]:
    """Arrays of unsigned ``width``-bit values, biased towards 0, the maximum and repeats."""
    top = (1 << width) - 1
    value = st.one_of(st.integers(0, top), st.sampled_from([0, 1, top, top - 1]))
    dtype = np.uint64 if width > 32 else np.uint32 if width > 16 else np.uint16 if width > 8 else np.uint8
    return st.lists(value, max_size=max_rows).map(lambda v: np.array(v, dtype=dtype))
