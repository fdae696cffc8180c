"""The whole IPA query on generic rows: input check, sort, last touch, cap, aggregate, noise.

Phases and what they cost are documented in each module; ``QueryResult.seconds``
records the wall time of each phase as this party saw it.

**Malicious mode** (``ctx.malicious``, ``docs/malicious.md``): the same
messages, plus checkpoints (:func:`ipa.mpc.checkpoint.checkpoint`) that
verify every product each phase records: ``verify_sort``,
``verify_attribute``, ``verify_cap`` and ``verify_release`` (the aggregate and
the noise; its last checkpoint runs before ``run_query`` returns its result
shares). The sort records none today: each of its passes checks its own
products by MACs before it opens anything (:mod:`ipa.mpc.mac`). So no
unmasked value is opened, and no result share leaves a helper, before every
pending check has passed.

**Memory.** The verifier pins the x, y, z of every product not yet
verified, and a checkpoint needs about 75 bytes per helper for each pending
word it verifies at once (triples, their permutation, the opened
differences). So each phase is a :class:`Verification`: as soon as the
pending products pin more than :data:`VERIFY_CHUNK_WORDS` words, wherever in
the phase (inside the sort's passes, the attribution scans, the cap), they
are verified in chunks of at most that many words, one checkpoint each
(``verify_cap_0``, ``verify_cap_1``, …), and let go; a product larger than a
chunk is verified in slices (a matrix product in slices of its terms). The
malicious overhead is then a constant, not a cost per row. The cuts depend
only on shapes, so every helper makes the same ones. Every batch of every
checkpoint takes its share of the query's one soundness budget: the whole
query is sound to 2^-40 (:mod:`ipa.mpc.verifier`;
``QueryResult.log2_soundness``). A checkpoint's time counts in the phase it
closes (the last one in ``noise``). In semi-honest mode, and whenever
nothing is pending, a checkpoint sends nothing: the semi-honest messages are
unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

from ipa.attribution.aggregate import AGGREGATE_STEPS, aggregate
from ipa.attribution.boundaries import BOUNDARIES_STEPS, adjacent_equal
from ipa.attribution.cap import CAP_STEPS, cap_contributions
from ipa.attribution.config import QueryConfig
from ipa.attribution.last_touch import LAST_TOUCH_STEPS, last_touch
from ipa.attribution.rows import SharedRows
from ipa.attribution.sites import NEUTRALISE_STEPS, neutralise
from ipa.mpc.checkpoint import CHECKPOINT_STEPS, checkpoint
from ipa.mpc.context import Context, NoiseHook
from ipa.mpc.convert import BOOL_TO_ARITH_STEPS, bool_to_arith
from ipa.mpc.replicated import AShares, BShares, public
from ipa.mpc.sort import SORT_STEPS, sort
from ipa.mpc.step import Family, Steps
from ipa.mpc.verifier import Product, Split
from ipa.mpc.verify import CONSISTENCY_STEPS, check_consistent

__all__ = [
    "MAX_CHUNKS",
    "PHASES",
    "QUERY_STEPS",
    "VERIFY_CHUNK_WORDS",
    "NoiseHook",
    "PhaseHook",
    "QueryResult",
    "Verification",
    "no_noise",
    "run_query",
    "verify",
]

VERIFY_CHUNK_WORDS = 1 << 22
"""Most pending words (``Verifier.pending_words``) the query's verifier holds, and verifies in
one checkpoint: about 300 MB of checkpoint per helper, whatever n. Larger limits, measured at 10^5
events (docs/malicious.md §9.3): 2^23 saves 1.4 % of the bytes for 1.7 times the peak memory and 12 % more
CPU (few batches reach B = 3 within the query's soundness budget); not taken."""
MAX_CHUNKS = 1 << 16
"""Checkpoints per phase (``verify_cap_0`` … ``verify_cap_65535``); the last takes whatever remains.
The sort of 10^6 events takes about 500 (16 passes of about 94 pending words per row), so the
limit holds up to about 10^8 events. (It was 256, with a limit that doubled every 128
checkpoints: at 10^6 events the sort ran out of chunks and verified whole passes at once.)"""

QUERY_STEPS = Steps(
    "query",
    "noise",
    inputs=CONSISTENCY_STEPS,
    neutralise=NEUTRALISE_STEPS,
    sort=SORT_STEPS,
    boundaries=BOUNDARIES_STEPS,
    last_touch=LAST_TOUCH_STEPS,
    value_to_arith=BOOL_TO_ARITH_STEPS,
    cap=CAP_STEPS,
    aggregate=AGGREGATE_STEPS,
    verify_sort=Family(MAX_CHUNKS, CHECKPOINT_STEPS),
    verify_attribute=Family(MAX_CHUNKS, CHECKPOINT_STEPS),
    verify_cap=Family(MAX_CHUNKS, CHECKPOINT_STEPS),
    verify_release=Family(MAX_CHUNKS, CHECKPOINT_STEPS),
)
"""The query's step tree; ``tests/golden/steps.txt`` keeps it and its sub-trees under review.
The noise hook runs at the leaf ``noise`` (one-step protocols only); the
``verify_*`` checkpoints send only in malicious mode."""

PHASES = ("sort", "attribute", "cap", "aggregate", "noise")


def no_noise(ctx: Context, sums: AShares) -> AShares:
    """The noise hook of a test network: release the exact sums."""
    return sums


@dataclass
class QueryResult:
    """This party's shares of the B sums and the seconds it spent per phase."""

    sums: AShares
    seconds: dict[str, float] = field(default_factory=dict)
    log2_soundness: float | None = None
    """Malicious mode: log2 of the query's soundness bound, the sum over every batch its
    checkpoints verified (``Verifier.log2_soundness``, at most -40); None in semi-honest mode."""


PhaseHook = Callable[[str], None]
"""Called with each phase's name as it finishes (progress reporting)."""


class _Clock:
    def __init__(self, on_phase: PhaseHook | None) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()
        self._on_phase = on_phase

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = now - self._last
        self._last = now
        if self._on_phase:
            self._on_phase(phase)


def _sorted_columns(ctx: Context, rows: SharedRows, config: QueryConfig) -> tuple[BShares, ...]:
    """Rows stably sorted by (match key, constraint id), unpacked again after the sort."""
    cb, tb, bb = config.constraint_bits, config.timestamp_bits, config.breakdown_bits
    key_width, info_width = config.match_key_bits + cb, 1 + bb + tb
    key = rows.match_key.resize(key_width).shift_left(cb) ^ rows.constraint_id.resize(key_width)
    info = (
        rows.is_trigger.resize(info_width).shift_left(bb + tb)
        ^ rows.breakdown_key.resize(info_width).shift_left(tb)
        ^ rows.timestamp.resize(info_width)
    )
    key, info, value = sort(ctx, key, [key, info, rows.trigger_value])
    return key, info.shift_right(bb + tb), info.shift_right(tb).resize(bb), info.resize(tb), value


class Verification:
    """The checkpoints of one phase, at ``name_0``, ``name_1``, …, keeping the verifier small.

    Made at the start of a phase, it has the context's verifier call it back
    (``Verifier.spill``) as soon as the pending products pin more than the
    chunk limit (:data:`VERIFY_CHUNK_WORDS`), wherever in the phase that
    happens (inside the sort's passes, the attribution scans, the cap's
    running sums), and then verifies them in chunks of at most the limit, one
    checkpoint each, and lets them go. :meth:`close`, at the end of the phase,
    verifies what remains. A product larger than the limit is verified in
    slices (:func:`_pieces`). The last of the phase's :data:`MAX_CHUNKS`
    checkpoints takes all that remains. When and where it cuts depends
    only on the products' shapes, so every helper does the same. Nothing
    happens in semi-honest mode.
    """

    def __init__(self, ctx: Context, name: str) -> None:
        self.ctx, self.name, self.index = ctx, name, 0
        if ctx.verifier is not None:
            ctx.verifier.spill, ctx.verifier.spill_above = self._spill, self.limit

    @property
    def limit(self) -> int:
        """The most pending words one checkpoint verifies."""
        return VERIFY_CHUNK_WORDS

    def _spill(self) -> None:
        if self.index < MAX_CHUNKS - 1:  # the last checkpoint is close()'s
            self._verify(MAX_CHUNKS - 2, keep_last=True)

    def close(self) -> None:
        """Verify every pending product (nothing is sent if none is pending) and stop spilling."""
        verifier = self.ctx.verifier
        if verifier is None:
            return
        verifier.spill = None
        if verifier.pending:
            self._verify(MAX_CHUNKS - 1)

    def _verify(self, last: int, keep_last: bool = False) -> None:
        """Verify every pending product in chunks, at indices up to ``last`` (which takes the rest).

        A spill (``keep_last``) leaves the last chunk pending, for the products
        that follow to fill: it is rarely full (the limit was just passed), and a
        checkpoint of its own would cost its 4 rounds for little.
        """
        verifier = self.ctx.verifier
        assert verifier is not None
        spill, verifier.spill = verifier.spill, None  # recording a chunk again must not spill
        chunks = _chunks(verifier.take(), self.limit)
        rest = chunks.pop() if keep_last and len(chunks) > 1 else []
        room = last - self.index + 1
        if len(chunks) > room:
            chunks[room - 1 :] = [[p for chunk in chunks[room - 1 :] for p in chunk]]
        for k in range(len(chunks)):
            for product in chunks[k]:
                verifier.record(product)
            chunks[k] = []  # a verified chunk's products are not kept here
            checkpoint(self.ctx.narrow(self.name, self.index))  # verifies exactly chunk k
            self.index += 1
        for product in rest:  # pending again, after the checkpoints
            verifier.record(product)
        verifier.spill, verifier.spill_above = spill, self.limit


def verify(ctx: Context, name: str) -> None:
    """Verify every pending product in chunks at ``name_0``, ``name_1``, … (:class:`Verification`)."""
    Verification(ctx, name).close()


def _chunks(products: list[Product], limit: int) -> list[list[Product]]:
    """Consecutive runs of ``products`` (cut by :func:`_pieces`) of at most ``limit`` pending words."""
    chunks: list[list[Product]] = [[]]
    words = 0
    for product in products:
        for piece in _pieces(product, limit):
            size = 2 * piece.words  # both components, as Verifier.pending_words counts
            if chunks[-1] and words + size > limit:
                chunks.append([])
                words = 0
            chunks[-1].append(piece)
            words += size
    return chunks


def _pieces(product: Product, limit: int) -> list[Product]:
    """``product`` cut into slices of about ``limit`` pending words or fewer, each a product itself.

    An elementwise product (``multiply``, ``and``) is cut along its output's
    last axis, a sum of products along its last output axis (each output is
    the sum of its own terms), a matrix product along its terms
    (:func:`_matmul_parts`). Slices are views (of the operands broadcast to
    the output's shape).
    """
    z = product.z
    if 2 * product.words <= limit or z.left.ndim == 0:
        return [product]
    if product.op == "matmul":
        return _matmul_parts(product, limit)
    if product.op == "inner_product":
        x, y, ndim = product.x, product.y, product.x.left.ndim
        summed = product.axis % ndim
        x_axis = ndim - 1 if summed != ndim - 1 else ndim - 2
        if x.shape != y.shape or x_axis < 0:
            return [product]
        z_axis = x_axis if x_axis < summed else x_axis - 1
    else:
        x = product.x.map(lambda a: np.broadcast_to(a, z.shape))
        y = product.y.map(lambda a: np.broadcast_to(a, z.shape))
        x_axis = z_axis = z.left.ndim - 1
    length = z.shape[z_axis]
    step = max(limit * length // (2 * x.left.size + 2 * y.left.size + 2 * z.left.size), 1)
    edges = [*range(0, length, step), length]

    def cut(s: Any, axis: int, lo: int, hi: int) -> Any:
        index = (slice(None),) * axis + (slice(lo, hi),)
        return s.map(lambda a: a[index])

    op, axis = product.op, product.axis
    return [
        Product(op, cut(x, x_axis, lo, hi), cut(y, x_axis, lo, hi), cut(z, z_axis, lo, hi), axis)
        for lo, hi in pairwise(edges)
        if hi > lo
    ]


_TERM_BLOCK = 64
"""A matrix product's parts are whole multiples of this many terms (the checkpoint's widest unit)."""


def _matmul_parts(product: Product, limit: int) -> list[Product]:
    """A matrix product ``x @ yᵀ`` as parts of at most about ``limit`` words (at least 64 terms),
    each a slice of its terms; ``z`` is checked once, with the last part (:class:`ipa.mpc.verifier.Split`)."""
    x, y, z = product.x, product.y, product.z
    if not isinstance(z, AShares):
        return [product]
    (p, terms), q = x.shape, y.shape[0]
    step = max(limit // (2 * (p + q)) // _TERM_BLOCK, 1) * _TERM_BLOCK
    edges = [*range(0, terms, step), terms]
    if len(edges) <= 2:
        return [product]
    split = product.split
    if split is None:
        split = Split(z, len(edges) - 1)
    else:  # already a part (the aggregate's row blocks): its pieces are parts of the same split
        split.parts += len(edges) - 2
    terms_of = [(slice(None), slice(lo, hi)) for lo, hi in pairwise(edges)]
    return [Product("matmul", x[cols], y[cols], z, split=split) for cols in terms_of]


def run_query(
    ctx: Context,
    rows: SharedRows,
    config: QueryConfig,
    noise: NoiseHook = no_noise,
    on_phase: PhaseHook | None = None,
) -> QueryResult:
    """Shares of the B attributed, capped, noised sums of ``rows`` (see ``ipa.reference``).

    Every helper learns n, ``config`` and the public ``rows.off_site``;
    nothing else is opened to it. Off-site rows on the querying side are
    neutralised first (:mod:`ipa.attribution.sites`).

    Checkpoint 0 (``docs/malicious.md``), always, before anything else: the two
    holders of every component of every share column compare SHA-256 digests
    of their copies (:func:`ipa.mpc.verify.check_consistent`, step ``inputs``;
    1 round, 64 bytes per helper whatever n). Raises MaliciousBehaviourError
    ("input consistency") at the honest holder if a report collector sent it
    a different copy than the component's other holder got.

    **Distributed** (``ctx.distributed``: worker k of each helper, ``rows`` its
    block of the query's rows, any size): every phase runs in its distributed
    form (``docs/scaling.md``), each triple verifies its own products, and the
    result is triple k's share of the sums of the rows that end in its block
    after the sort, with the noise added by triple 0 only: the W results add
    up to the helper's noised sums, which the coordinator releases
    (``ipa_helper.cluster`` runs it so on a helper's Ray workers).
    """
    ctx = ctx.enter(QUERY_STEPS)
    check_consistent(ctx.narrow("inputs"), *rows.columns())
    clock = _Clock(on_phase)
    if len(rows) == 0 and not ctx.distributed:  # workers take part in the collectives with any block
        sums = public(ctx.party, np.zeros(config.num_breakdowns), np.uint64)
        return QueryResult(noise(ctx.narrow("noise"), sums), {p: 0.0 for p in PHASES}, _soundness(ctx))
    # Each column is dropped (del) as soon as no later phase reads it, so the peak is the
    # live columns plus one phase's working set, not every column the query ever made.
    phase = Verification(ctx, "verify_sort")
    rows = neutralise(ctx.narrow("neutralise"), rows, config.query_type)
    key, is_trigger, breakdown_key, timestamp, value = _sorted_columns(ctx.narrow("sort"), rows, config)
    phase.close()
    clock.lap("sort")
    phase = Verification(ctx, "verify_attribute")
    user = key.shift_right(config.constraint_bits).resize(key.width)
    same_group, same_user = adjacent_equal(ctx.narrow("boundaries"), [key, user])
    del key, user
    found = last_touch(
        ctx.narrow("last_touch"),
        same_group,
        is_trigger,
        breakdown_key,
        timestamp,
        max_events_per_user=config.max_events_per_user,
        window=config.window,
    )
    phase.close()
    del same_group, is_trigger, breakdown_key, timestamp
    clock.lap("attribute")
    # The value travels as boolean shares (so each helper can range-check it on
    # upload) and becomes arithmetic only here, where it is summed.
    phase = Verification(ctx, "verify_cap")
    amount = bool_to_arith(ctx.narrow("value_to_arith"), value, np.uint64)
    del value
    contribution = cap_contributions(ctx.narrow("cap"), found.attributed, amount, same_user, config.cap)
    phase.close()
    source_key = found.breakdown_key
    del amount, same_user, found
    clock.lap("cap")
    phase = Verification(ctx, "verify_release")
    sums = aggregate(ctx.narrow("aggregate"), contribution, source_key, config.num_breakdowns)
    del contribution, source_key
    clock.lap("aggregate")
    noised = noise(ctx.narrow("noise"), sums) if not ctx.distributed or ctx.group().index == 0 else sums
    phase.close()  # the last check: nothing pending leaves this helper
    clock.lap("noise")
    return QueryResult(noised, clock.seconds, _soundness(ctx))


def _soundness(ctx: Context) -> float | None:
    return None if ctx.verifier is None else ctx.verifier.log2_soundness
