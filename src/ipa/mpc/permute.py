"""Moving rows to secret destinations: shuffle, then open the destinations.

``move_rows(ctx, dest, columns)`` puts row i of every column at position
``dest[i]``, where ``dest`` is a shared permutation. The rows and ``dest`` are
first shuffled together by a permutation no helper knows, then the shuffled
``dest`` is opened: it is a uniformly random permutation, independent of the
data, so opening it reveals nothing; each helper then moves its shares
locally (Hamada et al. 2012; Asharov et al., CCS 2022).

Cost: the shuffle of ``dest`` and the columns (2 rounds of latency; per
row and column H1 sends 2 words, H2 and H3 1) plus 1 round and 1 word per
row to open ``dest``. Each helper learns only the random opened permutation.

**Malicious mode**: the shuffle is verified (:func:`ipa.mpc.shuffle.shuffle`:
tags, opened keys, checks), then a checkpoint verifies every pending product
(those behind ``dest``: conversions, one-hot, rank), and only then is the
shuffled ``dest`` opened, hash-confirmed and **mod 2^32** (``dest`` is
``uint64``; the shuffle verifies its low 32 bits, and n < 2^32), and checked
to be a permutation. Nothing unmasked is opened before both checks passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np

from ipa.errors import ProtocolError
from ipa.mpc.checkpoint import CHECKPOINT_STEPS, checkpoint
from ipa.mpc.collective import Blocks, route
from ipa.mpc.context import Context
from ipa.mpc.replicated import AShares, K, _Pair
from ipa.mpc.reveal import reveal
from ipa.mpc.shuffle import SHUFFLE_STEPS, shuffle
from ipa.mpc.step import Steps

__all__ = ["MOVE_ROWS_STEPS", "move_rows"]

MOVE_ROWS_STEPS = Steps("move_rows", "open", shuffle=SHUFFLE_STEPS, check=CHECKPOINT_STEPS)
"""``check`` (malicious mode only): the checkpoint between the shuffle and the opening."""


def move_rows(
    ctx: Context, dest: AShares, columns: Sequence[K], *, rows: Blocks | None = None, to: Blocks | None = None
) -> list[K]:
    """Row i of each column goes to position ``dest[i]`` (a shared permutation of range(n)).

    For ``c`` columns and ``dest`` of one word each:
    Cost: ``3`` rounds, ``(2*(c + 1) + 1, c + 2, c + 2)`` words per row.
    Raises ProtocolError if the opened destinations are not a permutation.

    In malicious mode ``dest`` must be ``uint64`` (values below 2^32) and the
    columns boolean or ``uint64``; it costs the malicious shuffle's (``W``,
    ``t``, ``L`` as there, dest included), a checkpoint's if products are
    pending, and the opening of dest in 4-byte words. With none pending:
    Malicious cost: ``6`` rounds, ``(2*W + 8*t + 4 + (L + 96) / n, W + 5*t + 4 + (2*L + 96) / n,
    W + 5*t + 4 + 128 / n)`` bytes per row.
    Raises MaliciousBehaviourError if a check fails.

    **Distributed** (``ctx.distributed``): ``dest`` and the columns are this
    worker's block of ``rows`` (gathered if not given), ``dest`` holds global
    positions, and the result is this worker's block of ``to`` (default
    :meth:`~ipa.mpc.collective.Blocks.even`). The distributed shuffle leaves
    the rows in even blocks, each triple opens its block of the shuffled
    destinations as above (a uniformly random permutation: the three helpers
    see the same values), and every worker sends each row to the worker whose
    block holds its destination, with its offset there
    (:func:`~ipa.mpc.collective.route`, the same routing at every helper).
    Cross-helper words summed over the triples are those of one process.
    With ``W`` workers, ``s`` the bytes of one row of dest and the columns and
    ``b`` of the columns alone, per helper (summed over its workers):
    Collective cost: at most ``2*s + 2*b + 4 + 8*W*(W-1)/n`` bytes per row
    (the shuffle's, then both share components of every column and a 4-byte
    offset; the last term is the sizes' gather, only if ``rows`` is not
    given). Only rows that change worker are sent: 1 − 1/W of them on
    average for even blocks. In malicious mode each triple checkpoints its
    own products and opens its block confirmed only once every worker of
    the helper passed its checkpoint (an empty all-gather: a row's
    destination depends on the digit totals of every worker), and the shuffle moves the
    tags too (``t`` tag bytes per helper and row, as in the shuffle):
    Malicious collective cost: at most ``2*(s + 3*t) + 2*b + 4 + 8*W*(W-1)/n`` bytes per row.
    That the opened destinations are a permutation is checked by the routing
    (every worker's block filled exactly once).
    """
    ctx = ctx.enter(MOVE_ROWS_STEPS)
    if ctx.malicious and dest.dtype != np.uint64:
        raise ValueError(f"in malicious mode dest must be uint64 (opened mod 2^32), got {dest.dtype}")
    if ctx.distributed:
        return _move_distributed(ctx, dest, columns, rows, to)
    n = len(dest)
    if n == 0:
        return list(columns)
    # One shuffle for the destinations and every column. It keeps each column's kind, which the
    # mixed list hides from the type checker: hence the casts, here and on the result.
    mixed: list[_Pair] = [dest, *columns]
    shuffled = shuffle(ctx.narrow("shuffle"), mixed)
    moved = cast(AShares, shuffled[0])
    if ctx.malicious:
        checkpoint(ctx.narrow("check"))
        moved = moved.map(lambda a: a.astype(np.uint32))  # the verified low 32 bits
    opened = reveal(ctx.narrow("open"), moved).astype(np.int64)
    if opened.min() < 0 or opened.max() >= n or np.bincount(opened, minlength=n).max() != 1:
        raise ProtocolError("opened destinations are not a permutation: inconsistent shares")
    source = np.empty(n, np.int64)
    source[opened] = np.arange(n)  # gather index: position j takes the shuffled row source[j]
    return [cast(K, col.map(lambda a: np.take(a, source, axis=-1))) for col in shuffled[1:]]


def _move_distributed(
    ctx: Context, dest: AShares, columns: Sequence[K], rows: Blocks | None, to: Blocks | None
) -> list[K]:
    """:func:`move_rows` on this worker's block: distributed shuffle, open, route."""
    if any(len(c) != len(dest) for c in columns):
        raise ValueError("columns must have as many rows as dest")
    group = ctx.group()
    rows = rows if rows is not None else ctx.gather_blocks(len(dest))
    to = to if to is not None else Blocks.even(rows.n, rows.workers)
    if rows.size(group.index) != len(dest) or to.n != rows.n or rows.workers != group.size:
        raise ValueError(f"worker {group.index}'s rows do not match the blocks {rows.bounds} and {to.bounds}")
    if rows.n == 0:
        return list(columns)
    mixed: list[_Pair] = [dest, *columns]
    shuffled = shuffle(ctx.narrow("shuffle"), mixed, rows=rows)
    moved = cast(AShares, shuffled[0])
    if ctx.malicious:
        checkpoint(ctx.narrow("check"))  # this triple's products
        ctx.all_gather("checked", [])  # and every other triple's: dest depends on all their totals
        moved = moved.map(lambda a: a.astype(np.uint32))  # the verified low 32 bits
    opened = reveal(ctx.narrow("open"), moved).astype(np.int64)
    if len(opened) and (opened.min() < 0 or opened.max() >= rows.n):
        raise ProtocolError("opened destinations are not a permutation: inconsistent shares")
    arrays = [a for col in shuffled[1:] for a in (col.left, col.right)]
    placed = route(group, f"{ctx.group_step}:route", arrays, opened, to)
    return [cast(K, col.like(placed[2 * i], placed[2 * i + 1])) for i, col in enumerate(shuffled[1:])]
