"""The whole IPA query on generic rows: input check, sort, last touch, cap, aggregate, noise.

Phases and what they cost are documented in each module; ``QueryResult.seconds``
records the wall time of each phase as this party saw it.

**Malicious mode** (``ctx.malicious``, ``docs/malicious.md``): the same
messages, plus a checkpoint (:func:`ipa.mpc.checkpoint.checkpoint`) at the
end of each phase that verifies every product the phase recorded:
``verify_sort``, ``verify_attribute``, ``verify_cap`` and, after the noise and
before ``run_query`` returns its result shares, ``verify_release``. So no
unmasked value is opened, and no result share leaves a helper, before every
pending check has passed. Memory: the verifier pins the x, y, z of every
product since the last checkpoint (one phase's products), and a checkpoint
needs about 50 bytes per helper for each pending word it verifies at once
(triples, their permutation, the opened differences; measured at 10^4
events). So each phase's products are verified in chunks of consecutive
products of at most :data:`VERIFY_CHUNK_WORDS` pending words, one checkpoint
each (``verify_cap_0``, ``verify_cap_1``, ...; at most :data:`MAX_CHUNKS` per
phase, larger chunks beyond), so the checkpoints' memory does not grow with n
beyond the phase's own products. Each chunk is verified within its
own share of the query's one soundness budget: the whole query, every checkpoint
of the sort included, is sound to 2^-40 (:mod:`ipa.mpc.verifier`;
``QueryResult.log2_soundness``). A checkpoint's time counts in the phase it
closes (the last one in ``noise``). In semi-honest mode, and whenever nothing is pending, a
checkpoint sends nothing: the semi-honest messages are unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

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
from ipa.mpc.verifier import Product
from ipa.mpc.verify import CONSISTENCY_STEPS, check_consistent

__all__ = [
    "MAX_CHUNKS",
    "PHASES",
    "QUERY_STEPS",
    "VERIFY_CHUNK_WORDS",
    "NoiseHook",
    "PhaseHook",
    "QueryResult",
    "no_noise",
    "run_query",
    "verify",
]

VERIFY_CHUNK_WORDS = 1 << 22
"""Most pending words (``Verifier.pending_words``) one checkpoint of the query verifies at once."""
MAX_CHUNKS = 256
"""Most checkpoints per phase; a phase with more than MAX_CHUNKS · VERIFY_CHUNK_WORDS takes larger chunks."""

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


def verify(ctx: Context, name: str) -> None:
    """Verify every pending product in chunks, one checkpoint each at ``name_0``, ``name_1``, ...

    Chunks are runs of consecutive products of at most :data:`VERIFY_CHUNK_WORDS`
    pending words (a single larger product is a chunk of its own); a phase
    that would need more than :data:`MAX_CHUNKS` takes larger ones, the last
    chunk taking whatever remains. The split depends only on the
    products' shapes, so every helper makes the same one. Nothing is sent in
    semi-honest mode or when nothing is pending.
    """
    verifier = ctx.verifier
    if verifier is None or not verifier.pending:
        return
    products = verifier.take()
    limit = max(VERIFY_CHUNK_WORDS, -(-sum(2 * p.words for p in products) // MAX_CHUNKS))
    chunks = _chunks(products, limit)
    del products
    if len(chunks) > MAX_CHUNKS:  # greedy runs may exceed the count: the last chunk takes the rest
        chunks[MAX_CHUNKS - 1 :] = [[p for chunk in chunks[MAX_CHUNKS - 1 :] for p in chunk]]
    for index in range(len(chunks)):
        for product in chunks[index]:
            verifier.record(product)
        chunks[index] = []  # a verified chunk's products are not kept here
        checkpoint(ctx.narrow(name, index))


def _chunks(products: list[Product], limit: int) -> list[list[Product]]:
    """Consecutive runs of ``products`` of at most ``limit`` pending words (a larger product alone)."""
    chunks: list[list[Product]] = [[]]
    words = 0
    for product in products:
        size = 2 * product.words  # both components, as Verifier.pending_words counts
        if chunks[-1] and words + size > limit:
            chunks.append([])
            words = 0
        chunks[-1].append(product)
        words += size
    return chunks


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
    """
    ctx = ctx.enter(QUERY_STEPS)
    check_consistent(ctx.narrow("inputs"), *rows.columns())
    clock = _Clock(on_phase)
    if len(rows) == 0:
        sums = public(ctx.party, np.zeros(config.num_breakdowns), np.uint64)
        return QueryResult(noise(ctx.narrow("noise"), sums), {p: 0.0 for p in PHASES}, _soundness(ctx))
    # Each column is dropped (del) as soon as no later phase reads it, so the peak is the
    # live columns plus one phase's working set, not every column the query ever made.
    rows = neutralise(ctx.narrow("neutralise"), rows, config.query_type)
    key, is_trigger, breakdown_key, timestamp, value = _sorted_columns(ctx.narrow("sort"), rows, config)
    verify(ctx, "verify_sort")
    clock.lap("sort")
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
    verify(ctx, "verify_attribute")
    del same_group, is_trigger, breakdown_key, timestamp
    clock.lap("attribute")
    # The value travels as boolean shares (so each helper can range-check it on
    # upload) and becomes arithmetic only here, where it is summed.
    amount = bool_to_arith(ctx.narrow("value_to_arith"), value, np.uint64)
    del value
    contribution = cap_contributions(ctx.narrow("cap"), found.attributed, amount, same_user, config.cap)
    verify(ctx, "verify_cap")
    source_key = found.breakdown_key
    del amount, same_user, found
    clock.lap("cap")
    sums = aggregate(ctx.narrow("aggregate"), contribution, source_key, config.num_breakdowns)
    del contribution, source_key
    clock.lap("aggregate")
    noised = noise(ctx.narrow("noise"), sums)
    verify(ctx, "verify_release")  # the last check: nothing pending leaves this helper
    clock.lap("noise")
    return QueryResult(noised, clock.seconds, _soundness(ctx))


def _soundness(ctx: Context) -> float | None:
    return None if ctx.verifier is None else ctx.verifier.log2_soundness
