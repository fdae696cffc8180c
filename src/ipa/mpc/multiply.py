"""Multiplication of arithmetic shares and AND of boolean shares.

Semi-honest replicated multiplication (Araki et al., CCS 2016): party i
computes ``z_i = x_i·y_i + x_i·y_{i+1} + x_{i+1}·y_i + α_i`` with ``α`` a PRSS
zero-sharing, so the z_i are a fresh three-way sharing of ``x·y``; party i
sends ``z_i`` to its previous neighbour, which turns the three-way sharing
back into a replicated one.

Cost of every function here: 1 round; each party sends one word per output
element (the ring's word, or the packed boolean word) to its previous
neighbour. What a party learns: nothing (what it receives is masked by α).

The local arithmetic takes the masks as arguments, so it can be tested with
fixed masks; the protocols draw them from PRSS under their step.

**Malicious mode** (``ctx.malicious``, ``docs/malicious.md``): the same
messages in the same round; each function also records ``(x, y, z)`` and its
bilinear map in ``ctx.verifier``, and :func:`ipa.mpc.checkpoint.checkpoint`
verifies the record later against bucket-checked triples (the cost of that
check is the checkpoint's). Until then ``z`` may be wrong by an additive error
of a corrupt helper's choice; no unmasked value may be opened.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ipa.mpc.channel import Peer
from ipa.mpc.context import Context
from ipa.mpc.replicated import AShares, BShares, Index, S, Shares, _Pair, stack
from ipa.mpc.ring import mask
from ipa.mpc.verifier import Op, Product

__all__ = [
    "and_",
    "and_stacked",
    "cross_terms",
    "cross_terms_and",
    "inner_product",
    "matmul",
    "multiply",
    "multiply_stacked",
    "reshare",
    "unrecorded_inner_product",
    "unrecorded_multiply",
]


def cross_terms(x: AShares, y: AShares, alpha: np.ndarray) -> np.ndarray:
    """Party i's additive share ``x_i y_i + x_i y_{i+1} + x_{i+1} y_i + α_i`` of ``x·y``."""
    return _cross_terms(x, y, alpha, np.add, np.multiply)


def cross_terms_and(x: BShares, y: BShares, alpha: np.ndarray) -> np.ndarray:
    """The boolean analogue of :func:`cross_terms` with AND and XOR."""
    return _cross_terms(x, y, alpha, np.bitwise_xor, np.bitwise_and)


_BLOCK = 1 << 16
"""Elements per block along the last (row) axis for the local terms of a product: the
temporaries stay a few MiB whatever n, and numpy's per-call cost does not show."""


def _cross_terms(
    x: AShares | BShares,
    y: AShares | BShares,
    alpha: np.ndarray,
    plus: np.ufunc,
    times: np.ufunc,
    into_alpha: bool = False,
) -> np.ndarray:
    """``x_i·(y_i + y_{i+1}) + x_{i+1}·y_i + α_i``, computed in row blocks so that it holds
    no temporary of the result's size: in a new array, or with ``into_alpha`` in ``alpha``
    itself (a fresh mask of the result's shape and dtype that nothing else holds)."""
    shape = np.broadcast_shapes(x.shape, y.shape, np.shape(alpha))
    dtype = np.result_type(x.dtype, y.dtype, alpha)
    if into_alpha and alpha.shape == shape and alpha.dtype == dtype and alpha.flags.writeable:
        z = alpha
    else:
        z = np.empty(shape, dtype)
        z[...] = alpha
    n = shape[-1] if shape else 1
    for start in range(0, n, _BLOCK):
        rows: Index = (..., slice(start, start + _BLOCK)) if shape else (...,)
        out = z[rows]
        x_left, x_right, y_left, y_right = (_rows(a, rows) for a in (x.left, x.right, y.left, y.right))
        term = plus(y_left, y_right, out=np.empty(out.shape, dtype))
        times(term, x_left, out=term)
        plus(out, term, out=out)
        times(x_right, y_left, out=term)
        plus(out, term, out=out)
    return z


def _rows(a: np.ndarray, rows: Index) -> np.ndarray:
    """Block ``rows`` of an operand, or the operand itself where it is broadcast over the rows."""
    return a[rows] if a.ndim and a.shape[-1] != 1 else a


def reshare(ctx: Context, z: np.ndarray) -> np.ndarray:
    """Turn this party's three-way share ``z_i`` into the pair ``(z_i, z_{i+1})``.

    Sends ``z_i`` to the previous neighbour, receives ``z_{i+1}`` from the next.
    1 round, one word per element.
    """
    ctx.send(Peer.PREV, z)
    (z_next,) = ctx.receive(Peer.NEXT, z)
    return z_next


def _record(ctx: Context, op: Op, x: Shares, y: Shares, z: S, axis: int = 0) -> S:
    """In malicious mode, note ``z = op(x, y)`` for the next checkpoint; return ``z``."""
    if ctx.verifier is not None:
        ctx.verifier.record(Product(op, x, y, z, axis))
    return z


def multiply(ctx: Context, x: AShares, y: AShares) -> AShares:
    """Elementwise product ``x·y`` in Z_2^k (any equal shapes, e.g. stacked columns).

    Each party sends one word per element to its previous neighbour.
    Cost: ``1`` round, ``1`` word per element.
    """
    return _record(ctx, "multiply", x, y, unrecorded_multiply(ctx, x, y))


def unrecorded_multiply(ctx: Context, x: AShares, y: AShares) -> AShares:
    """The semi-honest product ``x·y`` of broadcastable shapes, never recorded for a checkpoint.

    For products checked otherwise (:mod:`ipa.mpc.mac`); in malicious mode
    anything else must call :func:`multiply`.
    Cost: ``1`` round, ``1`` word per element of the result.
    """
    shape = np.broadcast_shapes(x.shape, y.shape)
    z = _cross_terms(x, y, ctx.prss.zero(ctx.step, shape, x.dtype), np.add, np.multiply, True)
    return AShares(z, reshare(ctx, z))


def and_(ctx: Context, x: BShares, y: BShares) -> BShares:
    """Elementwise AND of packed boolean words: ``width`` gates per element.

    Each party sends one packed word per element to its previous neighbour.
    Cost: ``1`` round, ``1`` word per element.
    """
    width = max(x.width, y.width)
    # Masked, so every component keeps zeros above the width, as BShares requires.
    alpha = ctx.prss.zero_xor(ctx.step, x.shape, x.dtype)
    alpha &= mask(width, x.dtype)  # in place: the draw is a new array
    z = _cross_terms(x, y, alpha, np.bitwise_xor, np.bitwise_and, True)
    return _record(ctx, "and", x, y, BShares(z, reshare(ctx, z), width))


def multiply_stacked(ctx: Context, xs: Sequence[AShares], ys: Sequence[AShares]) -> AShares:
    """``multiply(ctx, stack(xs), stack(ys))`` without stacking the operands.

    The same mask, message and result; each product's local terms go straight
    into its row of the mask, so the operands are never copied (in malicious
    mode they are: the record of the product holds the stacks).
    Cost: ``1`` round, ``1`` word per element of each product.
    """
    _check_stackable(xs, ys)
    if ctx.verifier is not None:  # the record needs the stacks
        return multiply(ctx, stack(xs), stack(ys))
    z = ctx.prss.zero(ctx.step, (len(xs), *xs[0].shape), xs[0].dtype)
    for k, (x, y) in enumerate(zip(xs, ys, strict=True)):
        _cross_terms(x, y, z[k], np.add, np.multiply, True)  # z[k] is a view: written in place
    return AShares(z, reshare(ctx, z))


def and_stacked(ctx: Context, xs: Sequence[BShares], ys: Sequence[BShares]) -> BShares:
    """``and_(ctx, stack(xs), stack(ys))`` without stacking the operands (see :func:`multiply_stacked`).

    Cost: ``1`` round, ``1`` word per element of each product.
    """
    _check_stackable(xs, ys)
    if ctx.verifier is not None:  # the record needs the stacks
        return and_(ctx, stack(xs), stack(ys))
    width = max(c.width for c in (*xs, *ys))
    alpha = ctx.prss.zero_xor(ctx.step, (len(xs), *xs[0].shape), xs[0].dtype)
    alpha &= mask(width, alpha.dtype)
    for k, (x, y) in enumerate(zip(xs, ys, strict=True)):
        _cross_terms(x, y, alpha[k], np.bitwise_xor, np.bitwise_and, True)
    return BShares(alpha, reshare(ctx, alpha), width)


def _check_stackable(xs: Sequence[_Pair], ys: Sequence[_Pair]) -> None:
    """ValueError unless the operands are as many, of one shape and one dtype (what ``stack`` needs)."""
    operands = [*xs, *ys]
    if not xs or len(xs) != len(ys):
        raise ValueError(f"need as many left as right operands, at least one, got {len(xs)} and {len(ys)}")
    if len({(c.shape, c.dtype) for c in operands}) != 1:
        raise ValueError("stacked operands must all have one shape and one dtype")


def inner_product(ctx: Context, x: AShares, y: AShares, axis: int = 0) -> AShares:
    """``sum(x·y)`` over ``axis``: the products are summed locally before resharing.

    1 round, 1 word per element of the *output* sent by each party, however
    many terms are summed.
    """
    return _record(ctx, "inner_product", x, y, unrecorded_inner_product(ctx, x, y, axis), axis)


def unrecorded_inner_product(ctx: Context, x: AShares, y: AShares, axis: int = 0) -> AShares:
    """:func:`inner_product` of broadcastable shapes (``x`` the larger), never recorded (see
    :func:`unrecorded_multiply`).

    Cost: ``1`` round, ``1`` word per element of the result.
    """
    local = _summed_cross_terms(x, y, axis)
    z = local + ctx.prss.zero(ctx.step, np.shape(local), x.dtype)
    return AShares(z, reshare(ctx, z))


def _summed_cross_terms(x: AShares, y: AShares, axis: int) -> np.ndarray:
    """``(x_i (y_i + y_{i+1}) + x_{i+1} y_i).sum(axis)``, in blocks of the last axis if it is kept."""
    axis %= x.left.ndim
    n = x.shape[-1]
    if axis == x.left.ndim - 1 or n <= _BLOCK:
        return (x.left * (y.left + y.right) + x.right * y.left).sum(axis, dtype=x.dtype)
    out = np.empty(x.shape[:axis] + x.shape[axis + 1 :], x.dtype)
    for start in range(0, n, _BLOCK):
        block = (..., slice(start, start + _BLOCK))
        out[block] = cross_terms(x[block], y[block], np.zeros((), x.dtype)).sum(axis, dtype=x.dtype)
    return out


def matmul(ctx: Context, x: AShares, y: AShares) -> AShares:
    """``x @ yᵀ`` for x of shape (a, n) and y of shape (b, n): every pairwise sum over rows.

    1 round, a·b words per party in total (independent of n). Local work: two
    (a × n)·(n × b) integer matrix products.
    """
    local = x.left @ (y.left + y.right).T + x.right @ y.left.T
    z = local + ctx.prss.zero(ctx.step, local.shape, x.dtype)
    return _record(ctx, "matmul", x, y, AShares(z, reshare(ctx, z)))
