"""Parallel-prefix carries on packed boolean words.

For w-bit operands a and b, ``g = a & b`` (generate) and ``p = a ^ b``
(propagate). A block of bits generates a carry out when its high part does
or its high part propagates one from its low part, ``G = G_hi ^ (P_hi & G_lo)``
(the OR is an XOR because a block never both generates and propagates), and
propagates when both parts do, ``P = P_hi & P_lo``; both ANDs of a level go
out in one message.

:func:`add` takes its carries from a Brent–Kung tree (:func:`carries`): the
(G, P) pairs of blocks of 2, 4, … bits going up, in words that halve at each
level, then each block's carry going down, one AND per even block. About 3w
bits per element in all instead of a Kogge–Stone prefix's 2w·⌈log2 w⌉ (36
bytes instead of 96 for 64-bit words, with the generate), for 2⌈log2 w⌉ − 1
rounds instead of ⌈log2 w⌉: in malicious mode each AND bit also costs the
checkpoint about 13 bits (:mod:`ipa.mpc.checkpoint`), and rounds are cheap.
``carry_save`` 1 round, 1 word. Parties learn nothing.

Where only the top bit of a sum is wanted (a sign bit,
:func:`ipa.mpc.convert.sign_bit`; a comparison, :func:`top_bit` and
:func:`ipa.mpc.compare.less_than`),
:func:`carry_out` combines the same
(G, P) pairs as a tree, halving the word at each level (bits 2i and 2i+1
become bit i, a local bit permutation of each share), so its messages are
2·(w/2 + w/4 + … ) bits rounded up to whole bytes, not 2·w bits per level.
"""

from __future__ import annotations

import numpy as np

from ipa.mpc.context import Context
from ipa.mpc.multiply import and_, and_stacked
from ipa.mpc.replicated import BShares
from ipa.mpc.ring import bool_dtype, mask
from ipa.mpc.step import Family, Steps

__all__ = [
    "ADD_STEPS",
    "CARRIES_STEPS",
    "CARRY_OUT_STEPS",
    "TOP_BIT_STEPS",
    "add",
    "carries",
    "carry_out",
    "carry_save",
    "top_bit",
]

CARRIES_STEPS = Steps("carries", up=Family(6), down=Family(5))
"""One AND per level up and per level down but the top's: log2 w ≤ 6 and log2 w - 1 ≤ 5."""
ADD_STEPS = Steps("add", "generate", carry=CARRIES_STEPS)
CARRY_OUT_STEPS = Steps("carry_out", level=Family(6))
"""One AND per tree level: log2 w ≤ 6 for words of up to 64 bits."""
TOP_BIT_STEPS = Steps("top_bit", "generate", carry=CARRY_OUT_STEPS)

# Bit i of the result is bit 2i of the word: the steps of a "perfect outer unshuffle" of 64 bits;
# _SPREAD undoes them (bit i to bit 2i).
_COMPACT = [
    (1, 0x3333333333333333),
    (2, 0x0F0F0F0F0F0F0F0F),
    (4, 0x00FF00FF00FF00FF),
    (8, 0x0000FFFF0000FFFF),
    (16, 0x00000000FFFFFFFF),
]
_SPREAD = [
    (16, 0x0000FFFF0000FFFF),
    (8, 0x00FF00FF00FF00FF),
    (4, 0x0F0F0F0F0F0F0F0F),
    (2, 0x3333333333333333),
    (1, 0x5555555555555555),
]


def add(ctx: Context, a: BShares, b: BShares) -> BShares:
    """``a + b mod 2^w`` of w-bit boolean shares (1 ≤ w ≤ 64): the generate, then :func:`carries`.

    Cost: ``max(2 * log2(w), 1)`` rounds, ``nbytes(w) + (sum(3 * nbytes(2**log2(w) >> j)
    for j in range(1, log2(w))) + 1 if w > 1 else 0)`` bytes per element.
    """
    ctx = ctx.enter(ADD_STEPS)
    g = and_(ctx.narrow("generate"), a, b)
    p = a ^ b
    return p ^ carries(ctx.narrow("carry"), g, p).shift_left(1)


def carries(ctx: Context, g: BShares, p: BShares) -> BShares:
    """Every carry of a w-bit sum (bit i: the carry out of bit i) from its per-bit generate ``g``
    and propagate ``p`` (1 ≤ w ≤ 64), by a Brent–Kung tree.

    Up: :func:`carry_out`'s levels, each pairing the blocks 2j (low) and
    2j+1 (high) of 2^l bits into block j of the next level, in words of half
    the width (the padding above bit w−1 is never read below it). Down, from
    the top block: block 2j+1 ends where block j above ends, so it has that
    block's carry; block 2j ends one block earlier:
    ``C_2j = G_2j ^ (P_2j & C_above_(j−1))``, one AND on the even blocks,
    whose word is then interleaved with the odd one (the inverse of the
    halving, local). The top's two blocks need no AND (block 0 has no carry in).
    Cost: ``2 * log2(w) - 1`` rounds,
    ``sum(3 * nbytes(2**log2(w) >> j) for j in range(1, log2(w))) + min(w - 1, 1)`` bytes per element.
    """
    width = _width(g, p)
    if width == 1:
        return g
    ctx = ctx.enter(CARRIES_STEPS)
    padded = 1 << (width - 1).bit_length()
    carry, below = _up(ctx, "up", g.resize(padded), p.resize(padded))  # carry: the top block's
    for level, (g_lo, p_lo) in enumerate(reversed(below)):
        even = (
            g_lo
            if carry.width == 1
            else g_lo ^ and_(ctx.narrow("down", level - 1), p_lo, carry.shift_left(1))
        )
        carry = _interleave(even, carry)
    return carry.resize(width)


def carry_save(ctx: Context, a: BShares, b: BShares, c: BShares) -> tuple[BShares, BShares]:
    """Reduce three addends to two with the same sum mod 2^w: ``(a^b^c, maj(a,b,c) << 1)``.

    maj = ((a^b) & (a^c)) ^ a. Cost: ``1`` round, ``1`` word per element.
    """
    majority = and_(ctx, a ^ b, a ^ c) ^ a
    return a ^ b ^ c, majority.shift_left(1)


def carry_out(ctx: Context, g: BShares, p: BShares) -> BShares:
    """The carry out of the top bit of a w-bit sum, from its per-bit generate ``g`` and propagate
    ``p`` (1 ≤ w ≤ 64): 1-bit shares.

    The words are padded to P = 2^⌈log2 w⌉ bits with propagate 1 above bit
    w−1 (which passes a carry through). Each level pairs bit 2i+1 (high)
    with bit 2i (low): ``G = G_hi ^ (P_hi & G_lo)``, ``P = P_hi & P_lo``, in
    words of half the width; the last level needs only G.
    Cost: ``log2(w)`` rounds,
    ``sum(2 * nbytes(2**log2(w) >> j) for j in range(1, log2(w))) + min(w - 1, 1)`` bytes per element.
    """
    if _width(g, p) == 1:
        return g
    ctx = ctx.enter(CARRY_OUT_STEPS)
    padded = 1 << (g.width - 1).bit_length()
    g, p = g.resize(padded), p.resize(padded).xor_public(ctx.party, mask(padded) ^ mask(p.width))
    return _up(ctx, "level", g, p)[0]


def _width(g: BShares, p: BShares) -> int:
    """The width of a generate and propagate pair; ValueError unless they have one."""
    if g.width != p.width:
        raise ValueError(f"generate and propagate must be one width, got {g.width} and {p.width}")
    return g.width


def _up(ctx: Context, name: str, g: BShares, p: BShares) -> tuple[BShares, list[tuple[BShares, BShares]]]:
    """The tree's levels (steps ``name_0``, …) on 2^L-bit words: the top block's G, and each level's
    even (low) blocks' (G, P), widest first."""
    below = []
    level = 0
    while g.width > 1:
        (g_lo, g_hi), (p_lo, p_hi) = _halves(g), _halves(p)
        below.append((g_lo, p_lo))
        step = ctx.narrow(name, level)
        if g.width == 2:
            g = g_hi ^ and_(step, p_hi, g_lo)
        else:
            both = and_stacked(step, [p_hi, p_hi], [g_lo, p_lo])
            g, p = g_hi ^ both[0], both[1]
        level += 1
    return g, below


def top_bit(ctx: Context, a: BShares, b: BShares) -> BShares:
    """Bit w−1 of ``a + b mod 2^w`` of w-bit boolean shares (2 ≤ w ≤ 64), 1-bit shares: the
    generate of the low w−1 bits, then only their carry out (:func:`carry_out`), not
    :func:`add`'s every carry.

    Cost: ``1 + log2(w - 1)`` rounds,
    ``nbytes(w) + sum(2 * nbytes(2**log2(w - 1) >> j) for j in range(1, log2(w - 1))) + min(w - 2, 1)``
    bytes per element.
    """
    if a.width != b.width or a.width < 2:
        raise ValueError(f"top_bit needs two words of one width of at least 2 bits, got {a.width}, {b.width}")
    ctx = ctx.enter(TOP_BIT_STEPS)
    low = a.width - 1
    g = and_(ctx.narrow("generate"), a, b).resize(low)  # bit w−1's own generate is not needed
    p = a ^ b
    return p.shift_right(low) ^ carry_out(ctx.narrow("carry"), g, p.resize(low))


def _halves(x: BShares) -> tuple[BShares, BShares]:
    """The even bits and the odd bits of each w-bit word, each packed into a w/2-bit word."""
    width = x.width // 2
    even, odd = (
        BShares(_even_bits(x.left >> shift, width), _even_bits(x.right >> shift, width), width)
        for shift in (0, 1)
    )
    return even, odd


def _interleave(even: BShares, odd: BShares) -> BShares:
    """The w-bit words whose bits 2i are ``even``'s bits i and bits 2i+1 ``odd``'s (the inverse of
    :func:`_halves`), of twice the width."""
    width = 2 * even.width
    left, right = (
        _spread(e, width) | (_spread(o, width) << np.uint64(1))
        for e, o in ((even.left, odd.left), (even.right, odd.right))
    )
    return BShares(left.astype(bool_dtype(width)), right.astype(bool_dtype(width)), width)


def _spread(a: np.ndarray, width: int) -> np.ndarray:
    """Bits 0, 1, 2, … of ``a`` (``width/2`` bits) as bits 0, 2, 4, … of a uint64 word."""
    x = a.astype(np.uint64)
    for shift, keep in _SPREAD:
        if 2 * shift < width:
            x = (x | (x << np.uint64(shift))) & np.uint64(keep)
    return x


def _even_bits(a: np.ndarray, width: int) -> np.ndarray:
    """Bits 0, 2, 4, … of ``a`` as bits 0, 1, 2, … of a ``width``-bit word (``2·width`` bits in)."""
    x = a.astype(np.uint64) & np.uint64(0x5555555555555555)
    for shift, keep in _COMPACT:
        if shift >= width:
            break
        x = (x | (x >> np.uint64(shift))) & np.uint64(keep)
    return x.astype(bool_dtype(width))
