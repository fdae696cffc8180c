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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np

from ipa.errors import ProtocolError
from ipa.mpc.context import Context
from ipa.mpc.replicated import AShares, K, _Pair
from ipa.mpc.reveal import reveal
from ipa.mpc.shuffle import SHUFFLE_STEPS, shuffle
from ipa.mpc.step import Steps

__all__ = ["MOVE_ROWS_STEPS", "move_rows"]

MOVE_ROWS_STEPS = Steps("move_rows", "open", shuffle=SHUFFLE_STEPS)


def move_rows(ctx: Context, dest: AShares, columns: Sequence[K]) -> list[K]:
    """Row i of each column goes to position ``dest[i]`` (a shared permutation of range(n)).

    For ``c`` columns and ``dest`` of one word each:
    Cost: ``3`` rounds, ``(2*(c + 1) + 1, c + 2, c + 2)`` words per row.
    Raises ProtocolError if the opened destinations are not a permutation.
    """
    ctx = ctx.enter(MOVE_ROWS_STEPS)
    n = len(dest)
    if n == 0:
        return list(columns)
    # One shuffle for the destinations and every column. It keeps each column's kind, which the
    # mixed list hides from the type checker: hence the casts, here and on the result.
    mixed: list[_Pair] = [dest, *columns]
    shuffled = shuffle(ctx.narrow("shuffle"), mixed)
    opened = reveal(ctx.narrow("open"), cast(AShares, shuffled[0])).astype(np.int64)
    if opened.min() < 0 or opened.max() >= n or np.bincount(opened, minlength=n).max() != 1:
        raise ProtocolError("opened destinations are not a permutation: inconsistent shares")
    source = np.empty(n, np.int64)
    source[opened] = np.arange(n)  # gather index: position j takes the shuffled row source[j]
    return [cast(K, col.map(lambda a: a[..., source])) for col in shuffled[1:]]
