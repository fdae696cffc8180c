"""Splitting a secret into three parties' shares, and putting it back together.

This is what an outside party does: a report collector sharing its columns,
a test feeding a protocol, or a result recipient reconstructing an output.
Masks come from the operating system's CSPRNG (``os.urandom``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ipa.errors import ProtocolError
from ipa.mpc.replicated import AShares, BShares, Shares
from ipa.mpc.ring import bool_dtype, check_arithmetic_dtype, mask

__all__ = ["random_words", "reconstruct", "share_arithmetic", "share_boolean"]


def random_words(shape: tuple[int, ...] | int, dtype: npt.DTypeLike) -> np.ndarray:
    """Uniform words from the OS CSPRNG."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    count = int(np.prod(shape, dtype=np.int64))
    return np.frombuffer(os.urandom(count * dtype.itemsize), dtype=dtype).reshape(shape)


def share_arithmetic(values: np.ndarray, dtype: npt.DTypeLike = np.uint64) -> list[AShares]:
    """The three parties' arithmetic shares of ``values`` (reduced mod 2^k)."""
    dtype = check_arithmetic_dtype(dtype)
    x = np.asarray(values).astype(dtype)
    c0, c1 = random_words(x.shape, dtype), random_words(x.shape, dtype)
    c = [c0, c1, x - c0 - c1]
    return [AShares(c[i], c[(i + 1) % 3]) for i in range(3)]


def share_boolean(values: np.ndarray, width: int) -> list[BShares]:
    """The three parties' boolean shares of ``width``-bit ``values``.

    Raises ``ValueError`` if a value does not fit in ``width`` bits.
    """
    dtype = bool_dtype(width)
    x = np.asarray(values)
    if x.size and (x.min() < 0 or int(x.max()) > int(mask(width))):
        raise ValueError(f"values must fit in {width} bits")
    x = x.astype(dtype)
    m = mask(width)
    c0, c1 = random_words(x.shape, dtype) & m, random_words(x.shape, dtype) & m
    c = [c0, c1, x ^ c0 ^ c1]
    return [BShares(c[i], c[(i + 1) % 3], width) for i in range(3)]


def reconstruct(shares: Sequence[Shares]) -> np.ndarray:
    """The secret from all three parties' shares.

    Each component is held by two parties; if their copies differ the shares
    are inconsistent and a :class:`ProtocolError` is raised.
    """
    if len(shares) != 3:
        raise ValueError(f"need three parties' shares, got {len(shares)}")
    for i in range(3):
        if not np.array_equal(shares[i].right, shares[(i + 1) % 3].left):
            raise ProtocolError(f"component {(i + 1) % 3} differs between H{i + 1} and H{(i + 1) % 3 + 1}")
    c = [s.left for s in shares]
    if isinstance(shares[0], BShares):
        return c[0] ^ c[1] ^ c[2]
    return c[0] + c[1] + c[2]
