"""A party's record of what malicious mode must still verify.

In malicious mode (``docs/malicious.md``) every product the basic protocols
compute (``multiply``, ``and_``, ``inner_product``, ``matmul``) is computed
exactly as in semi-honest mode, and recorded here as ``(x, y, z)`` with the
bilinear map that gave ``z``. :func:`ipa.mpc.checkpoint.checkpoint` later
verifies every pending record against bucket-checked random triples and
clears them; an unmasked opening refuses to run while anything is pending.

A :class:`Verifier` belongs to one party of one run: every context the party
derives (``enter``, ``narrow``) shares it. It holds references to the share
arrays, not copies: protocols never write into an array they computed with.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

from ipa.mpc.replicated import Shares

__all__ = ["Op", "Product", "Verifier"]

Op = Literal["multiply", "and", "inner_product", "matmul"]
"""The bilinear maps: elementwise product (ring), elementwise AND (packed words),
sum of products over ``axis`` (ring), ``x @ yᵀ`` (ring)."""


@dataclass(frozen=True)
class Product:
    """One semi-honest product to verify: ``z = op(x, y)`` (``axis`` for ``inner_product``)."""

    op: Op
    x: Shares
    y: Shares
    z: Shares
    axis: int = 0

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
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, product: Product) -> None:
        with self._lock:
            self.products.append(product)

    @property
    def pending(self) -> int:
        """Number of products recorded and not yet verified."""
        return len(self.products)

    @property
    def pending_words(self) -> int:
        """Share words pinned by pending products (2 per element: both components)."""
        return 2 * sum(p.words for p in self.products)

    def take(self) -> list[Product]:
        """Every pending product, in the order recorded; the verifier is empty afterwards."""
        with self._lock:
            taken, self.products = self.products, []
        return taken
