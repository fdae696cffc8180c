"""Oblivious shuffle: three permutations, each known to one pair of helpers.

The rows pass through π_01 (known to H1, H2), π_12 (H2, H3) and π_20
(H3, H1), so no single helper knows the composition. Between permutations the
data is a two-party sharing held by the pair that applies the next one:

1. H1 and H2 hold ``A = x_0 + x_1`` and ``B = x_2`` (no messages). They
   permute with π_01, re-mask with a PRSS word r_01, and H1 sends
   ``π_01(A) + r_01`` to H3.
2. H2 and H3 permute with π_12, re-mask, and H2 sends its part to H1.
3. H3 and H1 permute with π_20, re-mask, and turn the two-party sharing back
   into a replicated one: component 0 is a PRSS word z they share, H1 sends
   component 1 (its part minus z) and H3 its part (component 2) to H2.

Permuting means ``out[k] = in[π[k]]`` along the row (last) axis. Columns may
mix arithmetic (added) and boolean (XORed) shares and any word sizes.

Cost: per row and column H1 sends 2 words, H2 and H3 1 word each. Latency
2 rounds (in 3 steps): H2's message in step 2 needs nothing from step 1, so
it travels together with H1's.
Each message is masked by PRSS words its receiver does not hold, so a helper
learns nothing, not even the permutation.

**Distributed** (W workers per helper, ``docs/scaling.md``): a permutation
of all n rows known to a pair of helpers is applied without any worker
holding it whole. Worker k of both helpers holds the same block of
``in_k`` rows (their halves of it) and must end with block ``out_k`` of
:meth:`~ipa.mpc.collective.Blocks.even` (a function of n and W only). From
the group PRSS (seeds every worker of the pair holds) each worker draws the
same W×W counts C, C[k, j] rows from worker k to worker j, distributed as
those of a uniform permutation (:func:`~ipa.mpc.collective.transfer_counts`);
from the triple's PRSS, worker k of both helpers draws a uniform permutation
β_k of its rows (in that order, its first C[k, 0] rows go to worker 0, the
next C[k, 1] to worker 1, ...) and a uniform permutation α_k of the rows it receives, joined
in sender order. Both helpers hence apply the same permutation π, and it is
uniform: a π with counts C arises from exactly ∏_j C[k, j]! choices of β_k
per k and one α per j, so P(π) = P(C) · ∏_k ∏_j C[k, j]! / in_k! · ∏_j 1 / out_j!,
which with P(C) = ∏_k in_k! ∏_j out_j! / (n! ∏_kj C[k, j]!) is 1/n!. The
third helper sees only blocks of the public sizes out_k, masked as before;
C, β and α stay with the pair, which knows π anyway.

**Malicious mode** (``docs/malicious.md``, the shuffle section): the rows
carry blind-key tags (:mod:`ipa.mpc.tags`), t_j = K_j(row) with K_j known to
every helper but j until the shuffle is over; afterwards the keys are opened
and three checks run: the tags were made right, the first stage (H1's
message) kept every row with its tags, and so did the output. A helper that
alters, drops, duplicates or swaps rows, or permutes its two halves
differently, is caught except with probability 2^-64 per shuffle (boolean
columns; arithmetic ones in their low 32 bits, 2^-66).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ipa.mpc.channel import Peer
from ipa.mpc.collective import Blocks, permute_blocks, transfer_counts
from ipa.mpc.context import Context
from ipa.mpc.replicated import AShares, BShares, K
from ipa.mpc.ring import mask
from ipa.mpc.step import Family, Steps
from ipa.mpc.tags import CHECK_STEPS, TAG_STEPS, check_tags, make_tags

__all__ = ["MAX_COLUMNS", "SHUFFLE_STEPS", "shuffle"]

MAX_COLUMNS = 64
"""Columns one shuffle moves at most (each column draws its own PRSS masks)."""
_PERMUTE = Steps("shuffle.permute", "perm", mask=Family(MAX_COLUMNS))
_LAST = Steps("shuffle.permute_last", "perm", mask=Family(MAX_COLUMNS), output=Family(MAX_COLUMNS))
SHUFFLE_STEPS = Steps(
    "shuffle", perm_01=_PERMUTE, perm_12=_PERMUTE, perm_20=_LAST, tags=TAG_STEPS, check=CHECK_STEPS
)
"""``tags`` and ``check`` run in malicious mode only (:mod:`ipa.mpc.tags`)."""


def _draw(ctx: Context, peer: Peer, col: K, like: np.ndarray) -> np.ndarray:
    """PRSS words for re-masking ``col``: boolean ones stay within the column's width."""
    r = ctx.draw(peer, like.shape, like.dtype)
    return r & mask(col.width, like.dtype) if isinstance(col, BShares) else r


def _plus(col: K, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a + b if isinstance(col, AShares) else a ^ b


def _minus(col: K, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a - b if isinstance(col, AShares) else a ^ b


def _permute_and_mask(
    ctx: Context,
    peer: Peer,
    cols: Sequence[K],
    parts: list[np.ndarray],
    add_mask: bool,
    moves: tuple[Blocks, Blocks] | None = None,
) -> list[np.ndarray]:
    """Apply the permutation shared with ``peer`` to two-party ``parts`` and re-mask them.

    The party that adds the PRSS mask and the one that subtracts it hold the
    two halves, so the sum (or XOR) is unchanged. With ``moves`` (rows, to),
    the parts are this worker's block of ``rows`` and the permutation one of
    all n rows applied by :func:`permute_blocks`: its W×W counts from the
    group PRSS, the local permutations of this worker's rows and of what it
    receives from the triple's PRSS, as are the masks of its output rows.
    """
    step = ctx.narrow("perm")
    if moves is None:
        perm = step.permutation(peer, len(cols[0]))
        moved = [np.take(part, perm, axis=-1) for part in parts]  # 3–5× faster than part[..., perm]
    else:
        rows, to = moves
        me = step.group().index
        counts = transfer_counts(step.group_generator(peer), rows, to)
        local = step.generator(peer)  # the same two draws, in this order, at the peer's worker
        before, after = local.permutation(rows.size(me)), local.permutation(to.size(me))
        moved = permute_blocks(step.group(), f"{step.group_step}:rows", parts, counts, before, after)
    out = []
    for k, (col, part) in enumerate(zip(cols, moved, strict=True)):
        r = _draw(ctx.narrow("mask", k), peer, col, part)
        out.append(_plus(col, part, r) if add_mask else _minus(col, part, r))
    return out


def shuffle(ctx: Context, columns: Sequence[K], *, rows: Blocks | None = None) -> list[K]:
    """Permute equally long share columns by one random permutation no helper knows.

    For ``c`` columns of one word each (3 steps, of which two run at once):
    Cost: ``2`` rounds, ``(2*c, c, c)`` words per row.

    **Distributed** (``ctx.distributed``, ``W`` workers): the columns are this
    worker's block of the n rows (``rows``, gathered from the workers' sizes
    if not given) and the result is its block of
    :meth:`~ipa.mpc.collective.Blocks.even`. Each permutation is one of all
    n rows, uniformly random, applied alike by the two helpers that know it,
    each to its own half by one all-to-all among its workers
    (:func:`~ipa.mpc.collective.permute_blocks`; work and memory per worker
    O(its rows + W²), see the module docstring); masks and messages stay within
    each triple, per row, as above, so the cross-helper words summed over
    the triples are those of one process. n must stay below 10^9 (a
    ValueError otherwise, :data:`~ipa.mpc.collective.MAX_SHUFFLED_ROWS`).
    Each helper takes part in two of the three permutations; ``s`` bytes of one row (a word of every column):
    Collective cost: at most ``2*s + 8*W*(W-1)/n`` bytes per row
    (per helper, summed over its workers; the last term is the sizes' gather,
    only if ``rows`` is not given). Only rows that change worker are sent: a
    fraction 1 − Σ_k in_k·out_k / n² of them on average (1 − 1/W for even
    blocks). What crosses between a helper's workers is that helper's own
    half of the rows: its share components (H1 and H2, first permutation) or
    the masked words it received in the triple. In malicious mode the tag
    columns move with the data (``t`` as below, three helpers' tags):
    Malicious collective cost: at most ``2*(s + 3*t) + 8*W*(W-1)/n`` bytes per row;
    the tag keys come from the group PRSS (:mod:`ipa.mpc.tags`), and each
    triple opens them and checks its own block, once every worker of the
    helper has received its triple's shuffle messages (an empty all-gather:
    a helper that learnt a key early in one triple could otherwise forge
    the tags of another).

    **Malicious mode** (``ctx.malicious``): the rows carry blind-key tags
    (:mod:`ipa.mpc.tags`) through the same three permutations, then the keys
    are opened and the creation, the first stage and the output are checked.
    Boolean columns are verified in every bit; arithmetic columns must be
    ``uint64`` and are verified in their low 32 bits (NB: an error that is a
    multiple of 2^32 passes with probability up to 1; the sort opens its
    destinations mod 2^32). ``W`` bytes of data per row; ``t`` tag bytes per
    helper and row (8 if any column is boolean, plus 16 if any is arithmetic);
    ``L`` bytes of one key (64 per boolean byte of a row, 16 per arithmetic column):
    Malicious cost: ``5`` rounds,
    ``(2*W + 8*t + (L + 64) / n, W + 5*t + (2*L + 64) / n, W + 5*t + 96 / n)`` bytes per row.
    Raises MaliciousBehaviourError("shuffle key", "shuffle tags") if a helper deviated.
    """
    ctx = ctx.enter(SHUFFLE_STEPS)
    cols = list(columns)
    if not cols:
        return cols
    if ctx.distributed:
        if any(len(c) != len(cols[0]) for c in cols):
            raise ValueError("shuffle columns must have as many rows each")
        rows = rows if rows is not None else ctx.gather_blocks(len(cols[0]))
        if rows.n == 0:
            return cols
    elif len(cols[0]) == 0:
        return cols
    else:
        rows = None
    if not ctx.malicious:
        if len(cols) > MAX_COLUMNS:
            raise ValueError(f"shuffle moves at most {MAX_COLUMNS} columns, got {len(cols)}")
        return _shuffle(ctx, cols, rows)[0]
    tagged = make_tags(ctx.narrow("tags"), cols)  # type: ignore[arg-type]
    every = [*cols, *tagged.columns]
    if len(every) > MAX_COLUMNS:
        raise ValueError(
            f"a malicious shuffle moves at most {MAX_COLUMNS - 3 * tagged.layout.tag_columns} columns "
            f"(besides its tags), got {len(cols)}"
        )
    out, stage_1 = _shuffle(ctx, every, rows)
    if ctx.distributed:  # no key opens before every triple's shuffle messages have arrived
        ctx.all_gather("shuffled", [])
    check_tags(ctx.narrow("check"), tagged, cols, out[: len(cols)], out[len(cols) :], stage_1)  # type: ignore[arg-type]
    return out[: len(cols)]  # type: ignore[return-value]


def _shuffle(
    ctx: Context, cols: list[K], rows: Blocks | None = None
) -> tuple[list[K], list[np.ndarray] | None]:
    """The three permutations; also this party's half after the first one (H2 and H3 only).

    With ``rows`` (distributed), the columns are this worker's block of
    ``rows`` and the output its block of :meth:`Blocks.even`.
    """
    s01, s12, s20 = ctx.narrow("perm_01"), ctx.narrow("perm_12"), ctx.narrow("perm_20")
    first: tuple[Blocks, Blocks] | None = None
    then: tuple[Blocks, Blocks] | None = None
    size = len(cols[0])
    if rows is not None:
        to = Blocks.even(rows.n, rows.workers)
        first, then, size = (rows, to), (to, to), to.size(ctx.group().index)
    if ctx.party == 0:
        parts = [_plus(c, c.left, c.right) for c in cols]
        a = _permute_and_mask(s01, Peer.NEXT, cols, parts, True, first)
        s01.send(Peer.PREV, *a)
        c_part = s12.receive(Peer.NEXT, *a)
        f = _permute_and_mask(s20, Peer.PREV, cols, c_part, False, then)
        z = [
            _draw(s20.narrow("output", k), Peer.PREV, c, p)
            for k, (c, p) in enumerate(zip(cols, f, strict=True))
        ]
        y1 = [_minus(col, fk, zk) for col, fk, zk in zip(cols, f, z, strict=True)]
        s20.send(Peer.NEXT, *y1)
        return [col.like(zk, yk) for col, zk, yk in zip(cols, z, y1, strict=True)], None
    if ctx.party == 1:
        b = _permute_and_mask(s01, Peer.PREV, cols, [c.right for c in cols], False, first)
        c_part = _permute_and_mask(s12, Peer.NEXT, cols, b, True, then)
        s12.send(Peer.PREV, *c_part)
        y1 = s20.receive(Peer.PREV, *c_part)
        y2 = s20.receive(Peer.NEXT, *c_part)
        return [col.like(a, b) for col, a, b in zip(cols, y1, y2, strict=True)], b
    like = [c.left if len(c) == size else np.empty((*c.shape[:-1], size), c.dtype) for c in cols]
    a = s01.receive(Peer.NEXT, *like)
    d = _permute_and_mask(s12, Peer.PREV, cols, a, False, then)
    e = _permute_and_mask(s20, Peer.NEXT, cols, d, True, then)
    z = [
        _draw(s20.narrow("output", k), Peer.NEXT, c, p) for k, (c, p) in enumerate(zip(cols, e, strict=True))
    ]
    s20.send(Peer.PREV, *e)
    return [col.like(ek, zk) for col, ek, zk in zip(cols, e, z, strict=True)], a
