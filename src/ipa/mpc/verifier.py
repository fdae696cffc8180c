"""A party's record of what malicious mode must still verify, and of the soundness it spent.

In malicious mode (``docs/malicious.md``) every product the basic protocols
compute (``multiply``, ``and_``, ``inner_product``, ``matmul``) is computed
exactly as in semi-honest mode, and recorded here as ``(x, y, z)`` with the
bilinear map that gave ``z``. :func:`ipa.mpc.checkpoint.checkpoint` later
verifies every pending record against bucket-checked random triples and
clears them; an unmasked opening refuses to run while anything is pending.

**The soundness budget.** Each batch a checkpoint verifies (one per form of
product) lets a cheating helper escape with a probability bounded by its
bucket plan (:func:`ipa.mpc.buckets.log2_bound`); over a run, the union bound
adds them up. The verifier keeps that sum within 2^-s for the whole run
(s = :attr:`Verifier.security_bits`, 40), however many batches come, without
knowing their number in advance: batch i (counted from 0) may spend

    2^-s · (1 − 1/(i + 2)) − (what batches 0 … i−1 spent),

which is at least 2^-s/((i + 1)(i + 2)) and leaves the total below
2^-s · (1 − 1/(i + 2)) < 2^-s after it (the telescoping series
Σ 1/((i+1)(i+2)) = 1, with what a batch leaves unspent carried to the next).
Batch i asks :func:`ipa.mpc.buckets.parameters` for at most
s + log2((i + 1)(i + 2)) bits, usually barely more than s: a plan's bound is
often far below what it was asked for (a batch of 10^5 elementwise products
takes B = 4 and is sound to 2^-53), and the next batches inherit the rest.
The plans depend only on shapes, so every party spends alike.
:attr:`Verifier.bounds` holds each batch's log2 bound and
:attr:`Verifier.log2_soundness` their sum: what the run can claim. A batch
that no plan can verify within its allowance raises ProtocolError instead of
claiming less than the truth.

**Memory.** The verifier pins every pending product's x, y and z. A caller
that bounds it sets :attr:`Verifier.spill`: called as soon as a record takes
the pending words above :attr:`Verifier.spill_above`, it verifies them (the
query's phases do, :class:`ipa.attribution.pipeline.Verification`).

A :class:`Verifier` belongs to one party of one run: every context the party
derives (``enter``, ``narrow``) shares it. It holds references to the share
arrays, not copies: protocols never write into an array they computed with.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ipa.errors import ProtocolError
from ipa.mpc.buckets import SECURITY_BITS, Plan, log2_bound, parameters
from ipa.mpc.replicated import AShares, Shares

__all__ = ["Op", "Product", "Split", "Verifier"]

Op = Literal["multiply", "and", "inner_product", "matmul"]
"""The bilinear maps: elementwise product (ring), elementwise AND (packed words),
sum of products over ``axis`` (ring), ``x @ yᵀ`` (ring)."""

_BITS_STEP = 8
"""Bits asked of a plan are rounded up to 1/8 bit (fewer distinct plans to compute and cache)."""


@dataclass(eq=False)
class Split:
    """A matrix product verified in parts, each part a slice of its terms (``x[:, S] @ y[:, S]ᵀ``).

    A part's checkpoint verifies its terms and adds their verified value to
    the sum; the checkpoint of the last part checks ``z`` against the sum
    (z is only known whole: it was reshared once). Every part's triples are
    checked in its own checkpoint, so the sum is exact unless a batch's
    bound failed, and a wrong z is caught at the last part.
    """

    z: AShares
    parts: int
    _sum: AShares | None = None
    _done: int = 0

    def add(self, value: AShares) -> list[AShares]:
        """Add one part's verified value; the check value ``z − sum`` once every part is in."""
        self._sum = value if self._sum is None else self._sum + value
        self._done += 1
        return [self.z - self._sum] if self._done == self.parts else []


@dataclass(frozen=True)
class Product:
    """One semi-honest product to verify: ``z = op(x, y)`` (``axis`` for ``inner_product``).

    With ``split``, a part of a matrix product: ``x`` and ``y`` are a slice of
    its terms, and ``z`` is checked by ``split`` once every part is verified.
    """

    op: Op
    x: Shares
    y: Shares
    z: Shares
    axis: int = 0
    split: Split | None = None

    @property
    def words(self) -> int:
        """Words held for this record (what memory it pins until the checkpoint)."""
        return self.x.left.size + self.y.left.size + self.z.left.size


@dataclass(eq=False)
class Verifier:
    """The products one party computed in malicious mode and has not verified yet.

    Compared and hashed by identity (a context holding it stays hashable).
    """

    products: list[Product] = field(default_factory=list)
    checkpoints: int = 0
    """Checkpoints passed so far."""
    security_bits: int = SECURITY_BITS
    """The run's budget: every batch it verifies together is sound to 2^-security_bits."""
    bounds: list[float] = field(default_factory=list)
    """log2 of the bound of each batch planned so far, in order."""
    spill: Callable[[], None] | None = None
    """Called right after a record takes :attr:`pending_words` above :attr:`spill_above`: a
    checkpoint that keeps the verifier small (:class:`ipa.attribution.pipeline.Verification`)."""
    spill_above: int = 0
    _words: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, product: Product) -> None:
        """Add a product to verify; spill (verify what is pending) if that makes too many words.

        Products are recorded in the same order with the same shapes at every
        party, so every party spills at the same point.
        """
        with self._lock:
            self.products.append(product)
            self._words += 2 * product.words
        if self.spill is not None and self._words > self.spill_above:
            self.spill()

    @property
    def pending(self) -> int:
        """Number of products recorded and not yet verified."""
        return len(self.products)

    @property
    def pending_words(self) -> int:
        """Share words pinned by pending products (2 per element: both components)."""
        return self._words

    def take(self) -> list[Product]:
        """Every pending product, in the order recorded; the verifier is empty afterwards."""
        with self._lock:
            taken, self.products, self._words = self.products, [], 0
        return taken

    @property
    def log2_soundness(self) -> float:
        """log2 of the sum of every planned batch's bound: the run is sound to 2^this (−inf if none)."""
        if not self.bounds:
            return -math.inf
        top = max(self.bounds)
        return top + math.log2(math.fsum(2.0 ** (b - top) for b in self.bounds))

    def _spent(self) -> float:
        """What the batches so far spent, in units of 2^-security_bits."""
        return math.fsum(2.0 ** (b + self.security_bits) for b in self.bounds)

    def next_bits(self) -> float:
        """The bits the next batch asks for: −log2 of its allowance (module docstring), rounded up."""
        i = len(self.bounds)
        allowance = 1.0 - 1.0 / (i + 2) - self._spent()  # ≥ 1/((i+1)(i+2)) > 0 by induction
        bits = self.security_bits - math.log2(allowance)
        return math.ceil(bits * _BITS_STEP) / _BITS_STEP

    def plan(self, units: int) -> Plan:
        """The bucket plan of the next batch (``units`` units), its bound spent from the budget.

        Raises ProtocolError if no plan reaches the batch's allowance (the run
        would be less sound than 2^-security_bits).
        """
        bits = self.next_bits()
        try:
            plan = parameters(units, bits)
        except ValueError as error:
            raise ProtocolError(
                f"soundness budget exhausted: verification batch {len(self.bounds)} ({units} units) "
                f"would need 2^-{bits:g}, which no bucket plan reaches, to keep the run sound to "
                f"2^-{self.security_bits}"
            ) from error
        self.spend(log2_bound(plan.buckets, plan.size, plan.opened))
        return plan

    def spend(self, log2_bound: float) -> None:
        """Add one batch's bound; raises ProtocolError if the run's total would pass 2^-security_bits."""
        if self._spent() + 2.0 ** (log2_bound + self.security_bits) > 1.0:
            raise ProtocolError(
                f"soundness budget exhausted: a batch sound to 2^{log2_bound:.1f} would take the run past "
                f"2^-{self.security_bits} (spent 2^{self.log2_soundness:.1f} over {len(self.bounds)} batches)"
            )
        self.bounds.append(log2_bound)
