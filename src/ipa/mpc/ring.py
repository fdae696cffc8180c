"""Rings and word types: which numpy dtype holds a share of what.

Arithmetic shares live in Z_2^k for k in {32, 64} on ``uint32``/``uint64``,
whose numpy arithmetic wraps exactly like the ring. Boolean shares of a w-bit
value are packed in the smallest unsigned word with at least w bits, so one
numpy ``&`` evaluates w AND gates for every row.
"""

import numpy as np
import numpy.typing as npt

__all__ = ["ARITHMETIC_DTYPES", "bool_dtype", "check_arithmetic_dtype", "mask"]

ARITHMETIC_DTYPES = (np.dtype(np.uint32), np.dtype(np.uint64))

_WORDS = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.uint32), np.dtype(np.uint64))


def bool_dtype(width: int) -> np.dtype:
    """The smallest unsigned dtype that holds ``width`` packed bits (1 ≤ width ≤ 64)."""
    if not 1 <= width <= 64:
        raise ValueError(f"width must be between 1 and 64 bits, got {width}")
    return next(d for d in _WORDS if d.itemsize * 8 >= width)


def mask(width: int, dtype: npt.DTypeLike | None = None) -> np.unsignedinteger:
    """All-ones in the low ``width`` bits, as a numpy scalar of ``dtype``."""
    word: np.dtype = np.dtype(dtype) if dtype is not None else bool_dtype(width)
    return word.type((1 << width) - 1)


def check_arithmetic_dtype(dtype: npt.DTypeLike) -> np.dtype:
    """Return ``dtype`` if it is a supported arithmetic ring, else raise ``ValueError``."""
    dtype = np.dtype(dtype)
    if dtype not in ARITHMETIC_DTYPES:
        raise ValueError(f"arithmetic ring must be uint32 or uint64, got {dtype}")
    return dtype
