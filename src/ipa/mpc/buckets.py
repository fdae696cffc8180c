"""How many triples to check, and how: the bucket bound of cut-and-choose plus sacrifice.

Furukawa, Lindell, Nof, Weinstein, "High-throughput secure three-party
computation for malicious adversaries and an honest majority" (EUROCRYPT
2017), and Araki et al. (IEEE S&P 2017): M = N·B + C random triples are
generated; after they are fixed, a common coin permutes them; the first C are
opened and checked (cut-and-choose), the rest fall into N buckets of B; the
first triple of each bucket is sacrificed against the B − 1 others, and the
first triple of bucket k then verifies product k.

**The bound** (proved in ``docs/malicious.md`` §2.2). A sacrifice of triples
with errors E and E' passes exactly when E = E', so a bad triple survives only
if it is not opened and every triple of its bucket carries the same error.
If the adversary makes t triples bad, it wins at best when t = m·B and the bad
triples fill m whole buckets, none opened:

    P(m) = binom(N, m) · binom(M − mB, C) / binom(M, C) / binom(NB, mB)

(exactly the probability, over the coin, that a fixed set of mB triples is
neither opened nor split across buckets). The adversary chooses m, so a batch
is sound to 2^-s when ``max over 1 ≤ m ≤ N of P(m) ≤ 2^-s``; a run of many
batches shares one budget of 2^-40 among them (:mod:`ipa.mpc.verifier`). :func:`parameters`
picks the smallest B, then the smallest C, that reach it; batches smaller than
:data:`MIN_BUCKETS` are padded to it, so tiny batches need no huge B. The unit
(one "triple") is whatever a helper can corrupt as a whole: the packed word for
booleans, the element for rings, a block triple for inner products and
matrix products (its error is the whole block's error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ipa.mpc.prss import stream_bytes

__all__ = [
    "MIN_BUCKETS",
    "SECURITY_BITS",
    "Assignment",
    "CoinStream",
    "Plan",
    "assign",
    "coin_generator",
    "log2_bound",
    "parameters",
    "uniform_permutation",
]

SECURITY_BITS = 40
"""Statistical security of a whole run (``ipa.mpc.verifier.Verifier`` shares it out among the
run's batches) and the default of :func:`parameters`: the adversary wins with probability ≤ 2^-40."""

MIN_BUCKETS = 256
"""Batches with fewer units are padded to this many buckets (their extra first triples go unused)."""

_MAX_B = 16
_MAX_C = 64


@dataclass(frozen=True)
class Plan:
    """The triples of one batch: ``buckets`` buckets of ``size`` triples, and ``opened`` more."""

    units: int
    buckets: int
    size: int
    opened: int

    @property
    def triples(self) -> int:
        return self.buckets * self.size + self.opened


@dataclass(frozen=True)
class Assignment:
    """Where each triple goes after the coin: triple ``order[k]`` takes place k.

    Places 0 … C−1 are opened (cut-and-choose); the other N·B places are the
    buckets' slots, slot-major: place C + j·N + k is slot j of bucket k, slot 0
    kept to verify unit k. (Any fixed map of places to slots is as good, the
    permutation being uniform; slot-major keeps each slot's triples contiguous,
    so the checks broadcast over long rows.)
    """

    plan: Plan
    order: np.ndarray  # (N·B + C,)

    @property
    def opened(self) -> np.ndarray:
        return self.order[: self.plan.opened]

    @property
    def slots(self) -> np.ndarray:
        """(B, N): the triples in slot j of each bucket, the kept ones first."""
        return self.order[self.plan.opened :].reshape(self.plan.size, self.plan.buckets)

    @property
    def buckets(self) -> np.ndarray:
        """(N, B): the triples of each bucket, the kept one first."""
        return self.slots.T

    @property
    def first(self) -> np.ndarray:
        return self.slots[0]

    @property
    def others(self) -> np.ndarray:
        return self.buckets[:, 1:]


def _lbinom(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _log_p(buckets: int, size: int, opened: int, m: int) -> float:
    """Natural log of P(m) (module docstring)."""
    n, b, c = buckets, size, opened
    total = n * b + c
    return _lbinom(n, m) + _lbinom(total - m * b, c) - _lbinom(total, c) - _lbinom(n * b, m * b)


_EXACT = 256
""":func:`log2_bound` evaluates P(m) exactly for the first and last this many m."""

_BLOCK_GROWTH = 1 / 16
"""Between them, over blocks of m whose width is this fraction of their distance from the nearer end."""


@lru_cache(maxsize=256)
def log2_bound(buckets: int, size: int, opened: int) -> float:
    """log2 of an upper bound on ``max over 1 ≤ m ≤ N of P(m)`` (module docstring), equal to it
    wherever the maximum lies within :data:`_EXACT` of either end, as it does for every plan used.

    P(m) is evaluated exactly at both ends of the range. Each block of the
    middle, widening away from the nearer end, contributes an upper bound on
    P over the block: each of the three factors of P is monotone or unimodal
    in m, so its largest value over the block is at an end or at its mode,
    and the product of those maxima bounds every P(m) of the block. Those
    bounds fall far below the ends' values, so the result is the exact
    maximum at O(log N) cost, where evaluating every m took O(N·B) time and
    memory (a table of log-factorials as long as the batch).
    """
    n, b, c = buckets, size, opened
    ends = sorted({*range(1, min(n, _EXACT) + 1), *range(max(1, n - _EXACT + 1), n + 1)})
    values = [_log_p(n, b, c, m) for m in ends]
    values += [_block_bound(n, b, c, lo, hi) for lo, hi in _middle_blocks(n)]
    return max(values) / math.log(2.0)


def _middle_blocks(n: int) -> list[tuple[int, int]]:
    """Blocks covering ``_EXACT < m ≤ n − _EXACT``, each about 1/16 of its distance from the nearer end."""
    blocks, lo, last = [], _EXACT + 1, n - _EXACT
    while lo <= last:
        distance = lo if lo <= n // 2 else (n - lo) / (1 + _BLOCK_GROWTH)
        hi = min(last, lo + max(1, int(distance * _BLOCK_GROWTH)) - 1)
        blocks.append((lo, hi))
        lo = hi + 1
    return blocks


def _block_bound(n: int, b: int, c: int, lo: int, hi: int) -> float:
    """An upper bound on ln P(m) for lo ≤ m ≤ hi, from each factor's largest value on the block.

    ln binom(N, m) is unimodal with its mode at ⌊N/2⌋; ln binom(M − mB, C) falls
    as m grows; ln binom(NB, mB) is unimodal, so its least value on the block is
    at an end.
    """
    total = n * b + c
    mode = min(max(n // 2, lo), hi)
    least = min(_lbinom(n * b, lo * b), _lbinom(n * b, hi * b))
    return _lbinom(n, mode) + _lbinom(total - lo * b, c) - _lbinom(total, c) - least


@lru_cache(maxsize=256)
def parameters(units: int, security: float = SECURITY_BITS) -> Plan:
    """The cheapest plan (smallest bucket size B, then fewest opened C) sound to 2^-security.

    ``security`` may be fractional: a run's verifier asks each batch for its
    share of the run's budget (:class:`ipa.mpc.verifier.Verifier`).

    ``units`` products are to be verified; the batch is padded to at least
    :data:`MIN_BUCKETS` buckets. The two ends of the bound (m = 1: one bad
    bucket; m = N: every bucket bad, caught only by cut-and-choose) rule out
    candidates quickly; the chosen plan is then checked over every m.
    """
    if units < 0:
        raise ValueError(f"units must be >= 0, got {units}")
    buckets = max(units, MIN_BUCKETS)
    limit = -security * math.log(2.0)
    for size in range(2, _MAX_B + 1):
        if _log_p(buckets, size, _MAX_C, 1) > limit:
            continue  # one bad bucket survives too often, whatever C
        for opened in range(1, _MAX_C + 1):
            ends = (_log_p(buckets, size, opened, 1), _log_p(buckets, size, opened, buckets))
            if max(ends) <= limit and log2_bound(buckets, size, opened) <= -security:
                return Plan(units, buckets, size, opened)
    raise ValueError(f"no bucket plan up to B = {_MAX_B}, C = {_MAX_C} reaches 2^-{security}")


class CoinStream:
    """The words every party derives from the same opened 128-bit coin: AES-128-CTR keyed by it.

    Plain AES (``cryptography``) on a zero counter block, read as little-endian
    ``uint64``: the same words on every platform and numpy version. Successive
    calls continue the stream.
    """

    def __init__(self, coin: np.ndarray) -> None:
        key = np.ascontiguousarray(coin, dtype="<u8").tobytes()
        if len(key) != 16:
            raise ValueError(f"a coin is 128 bits (two uint64 words), got {len(key)} bytes")
        self._stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()

    def words(self, count: int) -> np.ndarray:
        """The next ``count`` words of the stream, as a new ``uint64`` array."""
        return stream_bytes(self._stream, 8 * count).view("<u8").astype(np.uint64, copy=False)


def assign(plan: Plan, stream: CoinStream) -> Assignment:
    """Permute the plan's triples uniformly with ``stream`` (keyed by the common coin)."""
    return Assignment(plan, uniform_permutation(stream, plan.triples))


def coin_generator(coin: np.ndarray) -> CoinStream:
    """The stream every party derives from the same opened 128-bit coin (two uint64 words)."""
    return CoinStream(coin)


def uniform_permutation(stream: CoinStream, m: int) -> np.ndarray:
    """An exactly uniform permutation of ``range(m)`` (``int64``) from the coin's stream.

    Each element gets a random key; sorting by key gives a uniform order
    whenever the keys are distinct. The keys' top 64 − ⌈log2 m⌉ bits are packed
    above the element's index, so one ``np.sort`` of plain words does it (about
    3× faster than Fisher–Yates, whose random accesses miss the cache); elements
    whose keys tie (about m²/2^(65 − ⌈log2 m⌉) of them) are put in a uniform
    order among themselves by fresh keys (:func:`_order_ties`), so the result
    is exactly uniform, not only up to the tie probability.
    """
    if m <= 1:
        return np.arange(m, dtype=np.int64)
    bits = (m - 1).bit_length()
    low = np.uint64((1 << bits) - 1)
    packed = stream.words(m)
    packed &= ~low
    packed |= np.arange(m, dtype=np.uint64)
    packed.sort()
    order = (packed & low).astype(np.int64)
    packed >>= np.uint64(bits)  # the keys, in sorted order
    tied = packed[1:] == packed[:-1]
    if tied.any():
        starts = np.concatenate([[True], ~tied])
        run = np.cumsum(starts) - 1
        in_tie = np.bincount(run)[run] > 1
        places = np.flatnonzero(in_tie)  # whole runs, consecutive
        order[places] = order[places][_order_ties(stream, run[places])]
    return order


def _order_ties(stream: CoinStream, groups: np.ndarray) -> np.ndarray:
    """A permutation of ``range(len(groups))`` that keeps each group (nondecreasing ids) in
    place and orders its members uniformly: by fresh 64-bit keys, again while any tie."""
    order = np.arange(len(groups))
    while True:
        keys = stream.words(len(groups))
        p = np.lexsort((keys, groups))
        order, groups, keys = order[p], groups[p], keys[p]
        same = (groups[1:] == groups[:-1]) & (keys[1:] == keys[:-1])
        if not same.any():
            return order
        groups = np.cumsum(np.concatenate([[True], ~same]))
