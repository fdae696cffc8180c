"""Parallel-prefix carries on packed boolean words (Kogge–Stone).

For w-bit operands a and b, ``g = a & b`` (generate) and ``p = a ^ b``
(propagate); after ⌈log2 w⌉ doubling levels ``G_i = G_i | (P_i & G_{i-s})``,
``P_i = P_i & P_{i-s}``, bit i of G is the carry out of bit i. The OR is an
XOR because a position never both generates and propagates. Both ANDs of a
level go out in one message.

Cost: ``add`` 1 + ⌈log2 w⌉ rounds and 2⌈log2 w⌉ words per element per party;
``carry_save`` 1 round, 1 word. Parties learn nothing.
"""

from __future__ import annotations

from ipa.mpc.context import Context
from ipa.mpc.multiply import and_, and_stacked
from ipa.mpc.replicated import BShares
from ipa.mpc.step import Family, Steps

__all__ = ["ADD_STEPS", "PREFIX_STEPS", "add", "carry_save", "prefix_carries"]

PREFIX_STEPS = Steps("prefix_carries", level=Family(6))
"""One AND per doubling level: ⌈log2 w⌉ ≤ 6 for words of up to 64 bits."""
ADD_STEPS = Steps("add", "generate", carry=PREFIX_STEPS)


def prefix_carries(ctx: Context, g: BShares, p: BShares) -> BShares:
    """Group-generate G from per-bit generate/propagate: bit i is the carry out of bit i.

    ⌈log2 w⌉ rounds; 2 words per element per round (1 in the last round).
    """
    ctx = ctx.enter(PREFIX_STEPS)
    shift, level = 1, 0
    while shift < g.width:
        last = 2 * shift >= g.width
        step = ctx.narrow("level", level)
        if last:
            g = g ^ and_(step, p, g.shift_left(shift))
        else:
            both = and_stacked(step, [p, p], [g.shift_left(shift), p.shift_left(shift)])
            g, p = g ^ both[0], both[1]
        shift, level = 2 * shift, level + 1
    return g


def add(ctx: Context, a: BShares, b: BShares) -> BShares:
    """``a + b mod 2^w`` of w-bit boolean shares (words of ``nbytes(w)`` bytes).

    Cost: ``1 + log2(w)`` rounds, ``max(2*log2(w), 1)`` words per element.
    """
    ctx = ctx.enter(ADD_STEPS)
    g = and_(ctx.narrow("generate"), a, b)
    p = a ^ b
    carries = prefix_carries(ctx.narrow("carry"), g, p)
    return p ^ carries.shift_left(1)


def carry_save(ctx: Context, a: BShares, b: BShares, c: BShares) -> tuple[BShares, BShares]:
    """Reduce three addends to two with the same sum mod 2^w: ``(a^b^c, maj(a,b,c) << 1)``.

    maj = ((a^b) & (a^c)) ^ a. Cost: ``1`` round, ``1`` word per element.
    """
    majority = and_(ctx, a ^ b, a ^ c) ^ a
    return a ^ b ^ c, majority.shift_left(1)
