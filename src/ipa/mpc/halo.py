"""The rows just before a worker's block: what a scan that looks back h rows needs (``docs/scaling.md``).

A protocol whose output at row i depends only on rows i−h … i (adjacent
equality, h = 1; last touch's look-back over K rows, h = K − 1) runs
distributed unchanged on ``halo + block``: each worker prepends the h rows
that precede its block in the global order, runs the protocol, and drops
the first outputs (:func:`without_halo`). The halo rows are computed twice
(by their own worker and by the next), so the triples together send the
messages of n + Σ_k h_k rows instead of n; no row's output changes.

**Who sends what.** Inside each helper only: every worker sends each other
worker its last ``min(h, block)`` rows of every column (its own two share
components), one all-gather; a worker then takes the last h rows of the
tails of the workers before it, so a block shorter than h (or empty) is
looked through. Nothing crosses between helpers and nothing is opened: a
worker of Hi sees more of Hi's own shares. The number of rows prepended,
``min(h, rows before the block)``, is a function of the block sizes, so it
is the same at every helper. Cost per helper (summed over its W workers):
at most ``W·(W−1)·h`` rows of the columns, O(W²·h) bytes whatever n.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ipa.mpc.context import Context
from ipa.mpc.replicated import S

__all__ = ["with_halo", "without_halo"]


def with_halo(ctx: Context, name: str, columns: Sequence[S], h: int) -> tuple[list[S], int]:
    """This worker's columns with the (up to) ``h`` rows before its block prepended, and how many.

    ``name`` keys the exchange at this step. In one process (``ctx.distributed``
    false) the columns are returned as they are, with 0.
    """
    if h < 0:
        raise ValueError(f"a halo has at least 0 rows, got {h}")
    if not ctx.distributed or h == 0:
        return list(columns), 0
    tails = [part[..., -h:] for column in columns for part in (column.left, column.right)]
    gathered = ctx.all_gather(name, tails)
    k = ctx.group().index
    out: list[S] = []
    for c, column in enumerate(columns):
        halves = []
        for part, i in ((column.left, 2 * c), (column.right, 2 * c + 1)):
            before = np.concatenate([gathered[j][i] for j in range(k)] + [part[..., :0]], axis=-1)[..., -h:]
            halves.append(np.concatenate([before, part], axis=-1))
        out.append(column.like(*halves))
    prepended = len(out[0]) - len(columns[0]) if columns else 0
    return out, prepended


def without_halo(columns: Sequence[S], prepended: int) -> list[S]:
    """The columns without their first ``prepended`` rows (the halo's outputs)."""
    return [column.map(lambda a: a[..., prepended:]) for column in columns]
