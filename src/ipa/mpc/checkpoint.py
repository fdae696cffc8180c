"""Checkpoints: verify every pending product of malicious mode, by sacrifice against checked triples.

Deferred verification of semi-honest products (Furukawa, Lindell, Nof,
Weinstein, EUROCRYPT 2017; Araki et al., IEEE S&P 2017 for GF(2); Eerikson,
Keller, Orlandi, Pullonen, Puura, Simkin, "Use your Brain!", ITC 2020 /
ePrint 2019/164 for Z_2^k). The products themselves were computed by the
semi-honest protocols of :mod:`ipa.mpc.multiply`, which recorded
``(x, y, z = f(x, y))`` in the context's verifier; ``f`` is bilinear
(elementwise product or AND, a sum of products, ``x @ yᵀ``). For a random
triple ``(a, b, c = f(a, b))`` of the same shape, with ``ρ = x − a`` and
``σ = y − b`` opened (they are masked by a and b),

    z − c − f(ρ, b) − f(a, σ) − f(ρ, σ) = e_z − e_c

where e_z, e_c are the additive errors a corrupt helper put into the reshare
messages of z and of c: the only influence it has on a product (its wrong
local copies are overruled by each component's honest holder, and openings
are hash-confirmed). The check value is never multiplied by anything, so no
field and no MAC is needed; the same identity sacrifices one triple against
another. The triples are checked as in :mod:`ipa.mpc.buckets` (cut-and-choose,
then buckets of B, sized per batch so that the whole run stays sound to 2^-40:
:mod:`ipa.mpc.verifier`).

``checkpoint(ctx)``, in 4 rounds whatever is pending:

1. ``masks``: PRSS draws of the triples' a and b, and of a 128-bit coin (no messages);
   each triple's a and b are consecutive 16-byte blocks of the step's key
   stream, so that after the coin each party makes them again in the coin's
   order (AES on their counters) instead of gathering them;
2. ``triples``: c = f(a, b) by the semi-honest product (each party reshares one
   word per triple word to its previous neighbour);
3. ``coin``: the coin is opened (hash-confirmed) only now, after every triple
   message was sent; it seeds the permutation of the triples
   (:func:`ipa.mpc.buckets.assign`);
4. ``open``: one hash-confirmed opening of the cut-and-choose triples, the
   differences ρ, σ of every sacrificed pair and of every product with the
   first triple of its bucket; the opened triples are checked in the clear;
5. ``zero``: every sacrifice value and every product's check value is shown
   zero by a hash comparison (:func:`ipa.mpc.verify.check_zero`), nothing opened.

Cost (n elementwise products of b-byte words in one batch, plan (N, B, C) of
:func:`ipa.mpc.buckets.parameters`, N = max(n, 256)): 4 rounds; each party
sends N·B + C words of triples, 3·C + 2·(B − 1)·N + 2·n words of openings,
the coin (16 bytes + a 32-byte digest), a 32-byte digest for the openings and
64 bytes of zero check: about 3·B − 1 words per product for large batches
(11 at B = 4, from about 10^4 to 4·10^5 units; 8 at B = 3, from about 10^6).
ANDs are checked as ANDs of 64-bit words, their bits packed (:func:`_packed_and`):
n ANDs of b-byte words are ⌈n·b/8⌉ units, whatever their width.
A sum of products or a matrix product is cut into *units* of w terms
(:func:`block_width`): a unit's triple costs its output's words (1 for a sum,
p·q for a p×q matrix product) and opening it costs its inputs' words, so
``inner_product`` and ``matmul`` cost about B·(terms of x and y) + B·units·(output words).

A party learns: the coin, the cut-and-choose triples (discarded), and
differences masked by random triples it does not know.

Raises MaliciousBehaviourError naming the check ("verified reveal" for a
confirmed opening, "triple cut-and-choose", "triple sacrifice",
"multiplication"); never a value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ipa.errors import MaliciousBehaviourError
from ipa.mpc.buckets import MIN_BUCKETS, Assignment, Plan, assign, coin_generator
from ipa.mpc.channel import Peer
from ipa.mpc.context import Context
from ipa.mpc.prss import KeyStream
from ipa.mpc.replicated import AShares, BShares, Shares
from ipa.mpc.step import Steps
from ipa.mpc.verifier import Op, Product, Split
from ipa.mpc.verify import Blocks, check_zero, open_confirmed

__all__ = ["CHECKPOINT_STEPS", "checkpoint"]

CHECKPOINT_STEPS = Steps("checkpoint", "masks", "triples", "coin", "open", "zero")
"""``masks``: PRSS draws; ``triples``: their products; ``coin``: the common coin;
``open``: the masked differences; ``zero``: the hash check of every check value."""


@dataclass(frozen=True)
class Form:
    """A bilinear map on units: ``a`` of shape ``(…, *a_shape)``, ``b`` of ``(…, *b_shape)``."""

    op: Op
    dtype: np.dtype
    a_shape: tuple[int, ...]
    b_shape: tuple[int, ...]

    @property
    def boolean(self) -> bool:
        return self.op == "and"

    def f(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The map on arrays, batched over the leading axes."""
        if self.op == "and":
            return a & b
        if self.op == "multiply":
            return a * b
        if self.op == "inner_product":
            return np.einsum("...k,...k->...", a, b)  # wraps like the ring; 3× faster than (a*b).sum(-1)
        return np.matmul(a, np.swapaxes(b, -1, -2))

    @property
    def plus(self) -> np.ufunc:
        """Addition of the form's values: XOR for packed booleans, + in the ring."""
        return np.bitwise_xor if self.boolean else np.add

    @property
    def minus(self) -> np.ufunc:
        return np.bitwise_xor if self.boolean else np.subtract

    def shares(self, left: np.ndarray, right: np.ndarray) -> Shares:
        if self.boolean:
            return BShares(left, right, self.dtype.itemsize * 8)
        return AShares(left, right)


@dataclass(frozen=True)
class _Units:
    """One recorded product cut into units of its form, and how unit results add up to z."""

    form: Form
    x: Shares  # (U, *a_shape)
    y: Shares  # (U, *b_shape)
    z: Shares
    combine: Callable[[np.ndarray], np.ndarray]
    split: Split | None = None


def checkpoint(ctx: Context) -> None:
    """Verify and clear every product pending in ``ctx.verifier`` (nothing in semi-honest mode).

    See the module docstring for the protocol. Inputs: none (the pending
    records). Output: none; afterwards unmasked values may be opened.

    It runs whenever anything is pending (even empty products). Memory: a
    caller that bounds what the verifier holds sets ``Verifier.spill``, as
    the query's phases do (:class:`ipa.attribution.pipeline.Verification`).

    Each batch (one per form of product; all ANDs are one form,
    :func:`_packed_and`) takes its bucket plan from the verifier's soundness
    budget (:meth:`ipa.mpc.verifier.Verifier.plan`): the whole run, however
    many checkpoints it passes, is sound to 2^-40.
    For one batch of U units (plan N, B, C; a unit's inputs x and y are ``i``
    words, its output ``o`` words, of ``b`` bytes; :func:`block_width`), per
    element of n: triples, cut-and-choose, sacrifice and product openings,
    and 144 bytes of coin, digests and zero check (n elementwise products:
    U = n, i = 2, o = 1; n ANDs of b-byte words are packed into U = ⌈n·b/8⌉
    64-bit words, so b = 8, and all of a checkpoint's ANDs make one batch):
    Cost: ``4`` rounds,
    ``(((N*B + C)*o + C*(i + o) + (B-1)*N*i + U*i) * b + 144) / n`` bytes per element.
    Nothing is sent if nothing is pending.
    """
    verifier = ctx.verifier
    if verifier is None or not verifier.pending:
        return
    ctx = ctx.enter(CHECKPOINT_STEPS)
    groups: dict[Form, list[_Units]] = {}
    for product in verifier.take():
        units = _cut(product)
        groups.setdefault(units.form, []).append(units)
    batches = [_Batch(form, records, verifier.plan(_units(records))) for form, records in groups.items()]
    coin_shares = _generate(ctx, batches)
    (coin,) = open_confirmed(ctx.narrow("coin"), ctx.narrow("coin"), [coin_shares])
    generator = coin_generator(coin)
    for batch in batches:
        batch.arrange(assign(batch.plan, generator))
    to_open = [s for b in batches for s in b.to_open()]  # new arrays, or views of the gathered triples
    opened = open_confirmed(ctx.narrow("open"), ctx.narrow("open"), to_open, into_right=True)
    del to_open
    sacrifices: list[Shares | Blocks] = []
    products: list[Shares] = []
    for batch in batches:
        mine, opened = opened[:7], opened[7:]
        s, p = batch.check(ctx.party, mine)
        sacrifices.append(s)
        products += p
    check_zero(ctx.narrow("zero"), {"triple sacrifice": sacrifices, "multiplication": products})
    verifier.checkpoints += 1


# --- cutting records into units -------------------------------------------------------------------


def _cut(p: Product) -> _Units:
    if p.op == "and":
        return _packed_and(p)
    if p.op == "multiply":
        return _elementwise(p)
    if p.op == "inner_product":
        return _inner(p)
    return replace(_matmul(p), split=p.split)


def _elementwise(p: Product) -> _Units:
    """A ring product, elementwise: x and y in z's ring, broadcast to its shape and flattened."""
    dtype, shape = p.z.dtype, p.z.shape

    def flat(x: Shares) -> AShares:
        left, right = (np.broadcast_to(a.astype(dtype, copy=False), shape) for a in (x.left, x.right))
        return AShares(left.reshape(-1), right.reshape(-1))

    return _Units(Form("multiply", dtype, (), ()), flat(p.x), flat(p.y), p.z, lambda d: d.reshape(shape))


_WORD = np.dtype("<u8")
"""The unit of every boolean product: a 64-bit word of packed bits, read little-endian everywhere."""


def _packed_and(p: Product) -> _Units:
    """An AND of words of any width as an AND of 64-bit words: the bytes of x, y and z, zero-padded.

    AND acts bit by bit, so the packed words' product is the bytes' product,
    and the padding is a product of zeros. Every boolean product of a
    checkpoint is then one form, so one batch with one bucket plan, and its
    triples are 64-bit words, whose a and b fill one AES block of the
    ``masks`` stream exactly: a triple of bytes would take a whole block,
    and a place in the coin's permutation, for an eighth of the bits.
    """
    dtype, shape = p.z.dtype.newbyteorder("<"), p.z.shape

    def words(x: Shares) -> Shares:
        def pack(a: np.ndarray) -> np.ndarray:
            raw = np.ascontiguousarray(np.broadcast_to(a, shape), dtype).reshape(-1).view(np.uint8)
            pad = -raw.size % _WORD.itemsize
            packed = (np.concatenate([raw, np.zeros(pad, np.uint8)]) if pad else raw).view(_WORD)
            return packed if packed.flags.aligned else packed.copy()

        return BShares(pack(x.left), pack(x.right), 64)

    return _Units(Form("and", _WORD, (), ()), words(p.x), words(p.y), words(p.z), lambda d: d)


def block_width(outputs: int, terms: int, p: int = 1, q: int = 1) -> int:
    """Terms per unit for sums of products: a power of two near 8·p·q/(p+q), but small
    enough that ``outputs·⌈terms/w⌉`` units reach :data:`MIN_BUCKETS` when they can.

    A unit's triple costs p·q words to make and (p+q)·w to open: wider units
    make fewer triples, while enough units keep the bucket size B small.
    """
    w = 1 << max(math.ceil(math.log2(max(8 * p * q / (p + q), 1))), 0)
    while w > 1 and outputs * -(-terms // w) < MIN_BUCKETS:
        w //= 2
    return max(w, 1)


def _blocks(a: np.ndarray, w: int) -> np.ndarray:
    """(rows, terms) → (rows, ⌈terms/w⌉, w), zero-padded: zero terms add nothing to a sum."""
    rows, terms = a.shape
    pad = -terms % w
    if pad:
        a = np.concatenate([a, np.zeros((rows, pad), a.dtype)], axis=1)
    return a.reshape(rows, (terms + pad) // w, w)


def _inner(p: Product) -> _Units:
    dtype, axis = p.z.dtype, p.axis
    m, t = p.z.left.size, p.x.shape[axis]

    def rows(a: np.ndarray) -> np.ndarray:
        return np.moveaxis(a, axis, -1).reshape(m, t)

    w = block_width(m, t)
    nb = -(-t // w)
    form = Form("inner_product", dtype, (w,), (w,))

    def units(x: Shares) -> Shares:
        return x.map(lambda a: _blocks(rows(a), w).reshape(m * nb, w))

    return _Units(
        form, units(p.x), units(p.y), p.z, lambda d: d.reshape(m, nb).sum(1, dtype=dtype).reshape(p.z.shape)
    )


def _matmul(p: Product) -> _Units:
    dtype = p.z.dtype
    (a_rows, t), (b_rows, _) = p.x.shape, p.y.shape
    w = block_width(1, t, a_rows, b_rows)
    nb = -(-t // w)
    form = Form("matmul", dtype, (a_rows, w), (b_rows, w))

    def units(x: Shares) -> Shares:
        return x.map(lambda a: _blocks(a, w).transpose(1, 0, 2))

    return _Units(
        form, units(p.x), units(p.y), p.z, lambda d: d.reshape(nb, a_rows, b_rows).sum(0, dtype=dtype)
    )


# --- one batch of units of one form ---------------------------------------------------------------


def _units(records: list[_Units]) -> int:
    return sum(len(r.x.left) for r in records)


class _Batch:
    """The units of one form, their triples and their checks."""

    def __init__(self, form: Form, records: list[_Units], plan: Plan) -> None:
        self.form, self.records, self.plan = form, records, plan
        self.masks: _Masks
        self.streams: tuple[KeyStream, KeyStream]
        self.a: Shares
        self.b: Shares
        self.c: Shares

    def arrange(self, assignment: Assignment) -> None:
        """Put the triples in the coin's order (then only views are taken).

        a and b are made again from the ``masks`` key streams, block by block
        in the new order (AES on the triples' counters: :meth:`KeyStream.at`),
        which costs a few nanoseconds per triple where gathering them from
        the first draw missed the cache for each of their four components;
        c's two components are gathered together, as rows of a ``(M, 2, …)``
        stack (one cache miss per triple instead of two). ``np.take`` along
        axis 0: numpy's fancy indexing of rows is several times slower.
        """
        where = self.masks
        first = where.first(assignment.order)
        (a_left, b_left), (a_right, b_right) = (where.carve(s.at(first, where.width)) for s in self.streams)
        form = self.form
        self.a, self.b = form.shares(a_left, a_right), form.shares(b_left, b_right)
        both = np.take(np.stack([self.c.left, self.c.right], axis=1), assignment.order, axis=0)
        self.c = form.shares(both[:, 0], both[:, 1])

    def _opened(self, t: Shares) -> Shares:
        return t[: self.plan.opened]

    def _slots(self, t: Shares) -> Shares:
        """(B, N, …): slot j of bucket k is place C + j·N + k (:class:`ipa.mpc.buckets.Assignment`)."""
        plan = self.plan
        return t.map(lambda v: v[plan.opened :].reshape(plan.size, plan.buckets, *v.shape[1:]))

    def to_open(self) -> list[Shares]:
        """Cut-and-choose a, b, c; sacrifice ρ, σ; products ρ, σ (7 columns)."""
        a, b = self._slots(self.a), self._slots(self.b)
        units, minus = self.plan.units, self.form.minus
        return [
            self._opened(self.a),
            self._opened(self.b),
            self._opened(self.c),
            a.like(minus(a.left[:1], a.left[1:]), minus(a.right[:1], a.right[1:])),
            b.like(minus(b.left[:1], b.left[1:]), minus(b.right[:1], b.right[1:])),
            self._masked([r.x for r in self.records], a[0, :units]),
            self._masked([r.y for r in self.records], b[0, :units]),
        ]

    def _masked(self, parts: list[Shares], mask: Shares) -> Shares:
        """The records' inputs (concatenated) minus their masks, written straight into the result."""
        minus = self.form.minus

        def component(side: str, m: np.ndarray) -> np.ndarray:
            out, start = np.empty_like(m), 0
            for part in parts:
                v = getattr(part, side)
                minus(v, m[start : start + len(v)], out=out[start : start + len(v)])
                start += len(v)
            return out

        return mask.like(component("left", mask.left), component("right", mask.right))

    def check(self, party: int, opened: list[np.ndarray]) -> tuple[Blocks, list[Shares]]:
        """Check the opened triples; the sacrifice values and each product's check value (shares)."""
        form, units = self.form, self.plan.units
        a_open, b_open, c_open, rho_s, sigma_s, rho, sigma = opened
        if not np.array_equal(c_open, form.f(a_open, b_open)):
            raise MaliciousBehaviourError("triple cut-and-choose", "an opened triple is not a product")
        a, b, c = self._slots(self.a), self._slots(self.b), self._slots(self.c)
        per = max(1, _BLOCK_BYTES // max(c.left[0, :1].nbytes * (self.plan.size - 1), 1))

        def sacrifice(k: int) -> Shares:
            """c_first − (the others' Beaver values) for buckets k·per … (k + 1)·per − 1."""
            at = (slice(None), slice(k * per, (k + 1) * per))
            rest = (slice(1, None), at[1])
            value = _beaver(
                form, party, a.map(_at(rest)), b.map(_at(rest)), c.map(_at(rest)), rho_s[at], sigma_s[at]
            )
            first = (slice(0, 1), at[1])
            return value.like(
                form.minus(c.left[first], value.left, out=value.left),
                form.minus(c.right[first], value.right, out=value.right),
            )

        verified = _beaver(form, party, a[0, :units], b[0, :units], c[0, :units], rho, sigma)
        products, start = [], 0
        for record in self.records:
            end = start + len(record.x.left)
            value = verified[start:end].map(record.combine)
            if record.split is None:
                products.append(_sub(record.z, value))
            else:  # a part of a matrix product: z is checked with the last part
                assert isinstance(value, AShares)
                products += record.split.add(value)
            start = end
        return Blocks(-(-self.plan.buckets // per), sacrifice), products


def _at(index: tuple[slice, ...]) -> Callable[[np.ndarray], np.ndarray]:
    return lambda v: v[index]


_BLOCK_BYTES = 1 << 20
"""Bytes per block of the sacrifice values: computed, hashed and dropped one block at a time."""


def _beaver(
    form: Form, party: int, a: Shares, b: Shares, c: Shares, rho: np.ndarray, sigma: np.ndarray
) -> Shares:
    """Shares of f(a + ρ, b + σ) = c + f(ρ, b) + f(a, σ) + f(ρ, σ), for public ρ, σ (new arrays)."""
    both = form.f(rho, sigma)

    def component(ac: np.ndarray, bc: np.ndarray, cc: np.ndarray, public: bool) -> np.ndarray:
        out = form.f(rho, bc)
        form.plus(out, cc, out=out)
        form.plus(out, form.f(ac, sigma), out=out)
        if public:
            form.plus(out, both, out=out)
        return out

    return c.like(
        component(a.left, b.left, c.left, party == 0), component(a.right, b.right, c.right, party == 2)
    )


def _sub(a: Shares, b: Shares) -> Shares:
    if isinstance(a, BShares) and isinstance(b, BShares):
        return a ^ b
    assert isinstance(a, AShares) and isinstance(b, AShares)
    return a - b


# --- the randomness and the triples ---------------------------------------------------------------


Layout = list[tuple[tuple[int, ...], np.dtype]]


def _draw(ctx: Context, peer: Peer, layout: Layout) -> list[np.ndarray]:
    """One PRSS draw with ``peer`` at this step, cut into arrays of the given shapes and dtypes."""
    sizes = [int(np.prod(shape, dtype=np.int64)) * dtype.itemsize for shape, dtype in layout]
    offsets = np.concatenate([[0], np.cumsum([-(-s // 8) * 8 for s in sizes])]).astype(int)
    words = ctx.draw(peer, (int(offsets[-1]),), np.dtype(np.uint8))
    return [
        np.frombuffer(words, dtype, count=size // dtype.itemsize, offset=int(off)).reshape(shape)
        for (shape, dtype), size, off in zip(layout, sizes, offsets, strict=False)
    ]


_BLOCK = 16
"""Bytes of one block of a PRSS key stream (:class:`ipa.mpc.prss.KeyStream`)."""


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


@dataclass(frozen=True)
class _Masks:
    """Where one batch's a and b lie in the ``masks`` key streams: triple t takes the ``width``
    blocks from ``base + t·width`` of each stream, a's bytes first, then b's."""

    form: Form
    base: int
    triples: int

    @property
    def width(self) -> int:
        form = self.form
        return -(-(_nbytes(form.a_shape, form.dtype) + _nbytes(form.b_shape, form.dtype)) // _BLOCK)

    @property
    def end(self) -> int:
        return self.base + self.triples * self.width

    def carve(self, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """a and b (views) from the triples' blocks, ``(triples·width, 16)`` bytes in triple order."""
        form, m = self.form, self.triples
        rows = blocks.reshape(m, self.width * _BLOCK)
        na, nb = _nbytes(form.a_shape, form.dtype), _nbytes(form.b_shape, form.dtype)
        a = rows[:, :na].view(form.dtype).reshape(m, *form.a_shape)
        b = rows[:, na : na + nb].view(form.dtype).reshape(m, *form.b_shape)
        return a, b

    def first(self, order: np.ndarray) -> np.ndarray:
        """The first block of triples ``order[0]``, ``order[1]``, … (each has ``width`` from there)."""
        return np.uint64(self.base) + order.astype(np.uint64) * np.uint64(self.width)


_COIN_BLOCKS = 1
"""Block 0 of each ``masks`` stream is that party's part of the coin (two ``uint64`` words)."""


def _generate(ctx: Context, batches: list[_Batch]) -> AShares:
    """Random a, b (and the coin, returned) from PRSS at ``masks``; c = f(a, b) semi-honestly at ``triples``.

    Each triple's a and b are consecutive blocks of the ``masks`` key streams
    (:class:`_Masks`), so that after the coin :meth:`_Batch.arrange` makes
    again just the blocks of each triple in its new place, instead of
    gathering a and b. c is the semi-honest product of
    :mod:`ipa.mpc.multiply` for the batch's map (cross terms plus a PRSS
    zero-sharing, then a reshare), computed here without recording it.
    """
    masks = ctx.narrow("masks")
    base = _COIN_BLOCKS
    for batch in batches:
        batch.masks = _Masks(batch.form, base, batch.plan.triples)
        base = batch.masks.end
    streams = (masks.stream(Peer.PREV), masks.stream(Peer.NEXT))
    prev, nxt = (s.blocks(0, base) for s in streams)
    step = ctx.narrow("triples")
    zeros: Layout = [((b.plan.triples, *_c_shape(b.form)), b.form.dtype) for b in batches]
    alpha_prev, alpha_next = _draw(step, Peer.PREV, zeros), _draw(step, Peer.NEXT, zeros)
    locals_ = []
    for k, batch in enumerate(batches):
        form, where = batch.form, batch.masks
        batch.streams = streams
        (a_left, b_left), (a_right, b_right) = (where.carve(v[where.base : where.end]) for v in (prev, nxt))
        local = form.f(a_left, form.plus(b_left, b_right))  # the cross terms and the zero-sharing, in place
        form.plus(local, form.f(a_right, b_left), out=local)
        form.plus(local, alpha_next[k], out=local)
        form.minus(local, alpha_prev[k], out=local)
        locals_.append(local)
    del prev, nxt  # a and b are made again, in the coin's order (:meth:`_Batch.arrange`)
    received = reshare_all(step, locals_)
    for batch, local, other in zip(batches, locals_, received, strict=True):
        batch.c = batch.form.shares(local, other)
    return AShares(*(s.blocks(0, _COIN_BLOCKS).view(np.uint64).reshape(-1) for s in streams))


def reshare_all(ctx: Context, zs: list[np.ndarray]) -> list[np.ndarray]:
    """:func:`ipa.mpc.multiply.reshare` of several arrays in one message."""
    ctx.send(Peer.PREV, *zs)
    return ctx.receive(Peer.NEXT, *zs)


def _c_shape(form: Form) -> tuple[int, ...]:
    if form.op == "matmul":
        return (form.a_shape[0], form.b_shape[0])
    return ()
