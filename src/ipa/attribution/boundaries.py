"""Where groups and users start, on rows sorted by (match key, constraint id).

``same_group[i]`` is 1 when row i has the match key and constraint id of row
i−1, ``same_user[i]`` when it has the match key of row i−1; row 0 has both 0.
Both come from one batched equality of adjacent words, padded to 64 bits:
6 rounds, 20 bytes per row per party (the words halve every round).
Parties learn nothing. It runs ``equal`` at its own step, so its declared
steps are :data:`~ipa.mpc.compare.EQUAL_STEPS`.

**Distributed** (W workers per helper): each worker prepends the row before
its block (:func:`ipa.mpc.halo.with_halo`, h = 1), so its first row is
compared with its global predecessor; the triples' messages are those of
n + W − 1 rows.
"""

from __future__ import annotations

import numpy as np

from ipa.mpc.compare import EQUAL_STEPS, equal
from ipa.mpc.context import Context
from ipa.mpc.halo import with_halo, without_halo
from ipa.mpc.replicated import BShares, concat, public_bits, stack

__all__ = ["BOUNDARIES_STEPS", "adjacent_equal"]

BOUNDARIES_STEPS = EQUAL_STEPS


def adjacent_equal(ctx: Context, columns: list[BShares]) -> list[BShares]:
    """For each column (equal widths), 1-bit shares of ``x[i] == x[i−1]``, with 0 at row 0.

    For ``c`` columns of ``w`` bits and ``n`` rows (c = 2, w = 48: 6 rounds, about 20 bytes):
    Cost: ``log2(w)`` rounds, ``c*(n - 1)/n*sum(nbytes(2**i) for i in range(log2(w)))`` bytes per row.
    Distributed over ``W`` workers, their one row of halo each (per helper):
    Collective cost: at most ``W*(W - 1)*c*2*nbytes(w)/n`` bytes per row.
    """
    columns, prepended = with_halo(ctx, "halo", columns, 1)
    n = len(columns[0])
    if n == 0:
        return [c.resize(1) for c in columns]
    both = stack(columns)
    eq = equal(ctx, both[:, 1:], both[:, :-1])
    first = public_bits(ctx.party, np.zeros((len(columns), 1)), 1)
    flags = concat([first, eq])
    return without_halo([flags[k] for k in range(len(columns))], prepended)
