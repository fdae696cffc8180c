"""Equality and less-than of packed boolean words.

``equal``: AND-reduce the w bits of ``~(a ^ b)`` by halving: ⌈log2 w⌉ rounds,
and the words sent shrink with the width (at most 1 word per element per
round). ``less_than``: a < b exactly when a + ~b + 1 has no carry out of the
top bit, which :func:`ipa.mpc.adder.carry_out` finds by a tree with a
carry-in of one (no other carry is needed): 1 + ⌈log2 w⌉ rounds.
Both return 1-bit boolean shares; parties learn nothing.
"""

from __future__ import annotations

from ipa.mpc.adder import CARRY_OUT_STEPS, carry_out
from ipa.mpc.context import Context
from ipa.mpc.multiply import and_
from ipa.mpc.replicated import BShares
from ipa.mpc.step import Family, Steps

__all__ = ["EQUAL_STEPS", "LESS_THAN_STEPS", "equal", "less_than"]

EQUAL_STEPS = Steps("equal", level=Family(6))
LESS_THAN_STEPS = Steps("less_than", "generate", carry=CARRY_OUT_STEPS)


def equal(ctx: Context, a: BShares, b: BShares) -> BShares:
    """``a == b`` as a 1-bit sharing of w-bit words; the words sent halve every round.

    Cost: ``log2(w)`` rounds, ``sum(nbytes(2**i) for i in range(log2(w)))`` bytes per element.
    """
    ctx = ctx.enter(EQUAL_STEPS)
    width = max(a.width, b.width)
    padded = 1 << (width - 1).bit_length()
    same = (a ^ b).resize(padded).invert(ctx.party)  # the padding bits become ones
    level = 0
    while same.width > 1:
        half = same.width // 2
        same = and_(ctx.narrow("level", level), same.resize(half), same.shift_right(half))
        level += 1
    return same


def less_than(ctx: Context, a: BShares, b: BShares) -> BShares:
    """``a < b`` (unsigned, w bits) as a 1-bit sharing (words of ``nbytes(w)`` bytes).

    Cost: ``1 + log2(w)`` rounds,
    ``nbytes(w) + sum(2 * nbytes(2**log2(w) >> j) for j in range(1, log2(w))) + min(w - 1, 1)``
    bytes per element.
    """
    ctx = ctx.enter(LESS_THAN_STEPS)
    width = max(a.width, b.width)
    a, not_b = a.resize(width), b.resize(width).invert(ctx.party)
    g = and_(ctx.narrow("generate"), a, not_b)
    p = a ^ not_b
    g = g ^ p.mask(1)  # carry-in of one: bit 0 generates whenever it propagates
    return carry_out(ctx.narrow("carry"), g, p).invert(ctx.party)
