"""Conversions between boolean and arithmetic sharings.

- ``bit_to_arith``: 1-bit boolean shares → shares of 0/1 in Z_2^k. H1 knows
  ``y = b_0 ^ b_1`` and inputs it (masked by a PRSS word it shares with H3,
  sent to H2); then ``b = y ^ b_2 = y + b_2 - 2·y·b_2`` with one
  multiplication. 2 rounds; H1 sends 2 words per element, H2 and H3 send 1.
- ``arith_to_bool`` (A2B): each arithmetic component, known to a pair, is a
  boolean sharing for free; the three are added with a carry-save step and a
  Kogge–Stone adder. 2 + ⌈log2 k⌉ rounds, 1 + 2⌈log2 k⌉ k-bit words per
  element per party.
- ``bool_to_arith`` (B2A): the pairs (H1,H2) and (H2,H3) draw random
  arithmetic components a_1, a_2; the helpers compute ``y = x - a_1 - a_2`` in
  boolean and open it to H1 and H3 only, who take it as component 0.
  3 + ⌈log2 k⌉ rounds, about 1 + 2⌈log2 k⌉ k-bit words per element per party
  (H2 sends 2 more in the opening).
Each party sees only words masked by randomness it does not know.

**Malicious mode** (``ctx.malicious``, ``docs/malicious.md``): every AND and
multiplication is recorded and verified at the next checkpoint, so
``arith_to_bool`` and the adders verify by composition. Two things change:

- ``bit_to_arith`` does not let H1 input ``b_0 ^ b_1`` (a corrupt H1 could
  input anything, and no check of the products catches a wrong input): each
  component b_j, known to two helpers, is a trivial arithmetic sharing, and
  ``b = (b_0 ⊕ b_1) ⊕ b_2`` with ``x ⊕ y = x + y − 2xy``: two recorded
  multiplications, 2 rounds, 2 words per element per party, no input.
- ``bool_to_arith``'s opening of the masked y to H1 and H3 is hash-confirmed:
  H1 and H3 send each other a digest of the component the other received
  from H2 (step ``confirm``, in the same round). y is masked by a_1 + a_2, so
  it needs no checkpoint before it is opened.
"""

from __future__ import annotations

import hmac

import numpy as np
import numpy.typing as npt

from ipa.errors import MaliciousBehaviourError
from ipa.mpc.adder import ADD_STEPS, TOP_BIT_STEPS, add, carry_save, top_bit
from ipa.mpc.channel import Peer
from ipa.mpc.context import Context
from ipa.mpc.input import input_from
from ipa.mpc.mac import Macs
from ipa.mpc.multiply import multiply
from ipa.mpc.replicated import AShares, BShares
from ipa.mpc.ring import check_arithmetic_dtype
from ipa.mpc.step import Steps
from ipa.mpc.verify import DIGEST_BYTES, digest

__all__ = [
    "ARITH_TO_BOOL_STEPS",
    "BIT_TO_ARITH_STEPS",
    "BOOL_TO_ARITH_STEPS",
    "SIGN_BIT_STEPS",
    "arith_to_bool",
    "authenticated_bit_to_arith",
    "bit_to_arith",
    "bool_to_arith",
    "sign_bit",
]

BIT_TO_ARITH_STEPS = Steps("bit_to_arith", "input", "multiply", "authenticate", "xor_01", "xor_2")
"""Semi-honest: ``input`` (H1's y) and ``multiply``; malicious: ``xor_01`` (b_1·(1 - 2b_0)) and
``xor_2``, after ``authenticate`` (b_0's MACs) in :func:`authenticated_bit_to_arith`."""
ARITH_TO_BOOL_STEPS = Steps("arith_to_bool", "carry_save", add=ADD_STEPS)
SIGN_BIT_STEPS = Steps("sign_bit", "carry_save", top=TOP_BIT_STEPS)
BOOL_TO_ARITH_STEPS = Steps(
    "bool_to_arith", "mask_1", "mask_2", "carry_save", "open", "confirm", add=ADD_STEPS
)
"""``confirm`` (malicious mode only): H1 and H3 confirm each other's opening of y."""


def bit_to_arith(ctx: Context, b: BShares, dtype: npt.DTypeLike = np.uint32) -> AShares:
    """1-bit boolean shares (any shape) → arithmetic shares of the same bits in Z_2^k.

    Cost: ``2`` rounds, ``(2, 1, 1)`` words per element (k-bit words).
    Malicious cost: ``2`` rounds, ``2`` words per element (two recorded multiplications, no input).
    """
    ctx = ctx.enter(BIT_TO_ARITH_STEPS)
    dtype = check_arithmetic_dtype(dtype)
    if ctx.malicious:
        return _xor_of_components(ctx, b.left.astype(dtype), b.right.astype(dtype))
    zero = np.broadcast_to(np.zeros((), dtype), b.shape)  # read-only views, not columns
    # H1 holds b_0 and b_1 and inputs y = b_0 ^ b_1; the others pass only its shape and ring.
    y = input_from(ctx.narrow("input"), 0, (b.left ^ b.right).astype(dtype) if ctx.party == 0 else zero)
    b2 = AShares(  # component 2: H3's left, H2's right
        b.left.astype(dtype) if ctx.party == 2 else zero, b.right.astype(dtype) if ctx.party == 1 else zero
    )
    product = multiply(ctx.narrow("multiply"), y, b2)
    out = y + b2
    for part, twice in ((out.left, product.left), (out.right, product.right)):
        part -= twice  # in place, twice: y + b2 − 2·y·b2 without a temporary
        part -= twice
    return out


def _xor_of_components(ctx: Context, left: np.ndarray, right: np.ndarray) -> AShares:
    """b_0 ⊕ b_1 ⊕ b_2 from the components of 1-bit shares, each a trivial arithmetic sharing."""
    b0, b1, b2 = _components(ctx.party, left, right)
    t = b0 + b1 - multiply(ctx.narrow("xor_01"), b0, b1).scale(2)
    return t + b2 - multiply(ctx.narrow("xor_2"), t, b2).scale(2)


def _components(party: int, left: np.ndarray, right: np.ndarray) -> list[AShares]:
    """The three components of shares, each as a trivial arithmetic sharing.

    Party i holds b_i (``left``) and b_{i+1} (``right``); component j of the
    trivial sharing of b_j is b_j, held by its two holders, the others zero.
    """
    zero = np.zeros_like(left)
    return [AShares(left if j == party else zero, right if j == (party + 1) % 3 else zero) for j in range(3)]


def authenticated_bit_to_arith(ctx: Context, macs: Macs, b: BShares) -> AShares:
    """1-bit boolean shares (d, n) → authenticated arithmetic shares (d, 1 + K, n) in Z_2^64.

    The malicious :func:`bit_to_arith` with its products checked by ``macs``
    (:mod:`ipa.mpc.mac`) instead of a checkpoint. ``b = (b_0 ⊕ b_1) ⊕ b_2`` with
    ``x ⊕ y = x + y·(1 − 2x)``: b_0 is authenticated (a product with the
    keys; it is right by definition, as its honest holder's copy), then
    ``t = b_0 + b_1·(1 − 2b_0)`` and ``b = t + b_2·(1 − 2t)`` by two
    authenticated products, each of an authenticated stack by a plain
    component, so b_1 and b_2 need no MACs of their own (a helper that uses
    a wrong copy of one adds an error to the product, which the MACs catch
    like any other: :mod:`ipa.mpc.mac`).
    Cost: ``3`` rounds, ``K + 2*(1 + K)`` words per element.
    """
    ctx = ctx.enter(BIT_TO_ARITH_STEPS)
    b0, b1, b2 = _components(ctx.party, b.left.astype(np.uint64), b.right.astype(np.uint64))
    one = macs.one()
    t = macs.authenticate(ctx.narrow("authenticate"), b0)
    t = t + macs.multiply(ctx.narrow("xor_01"), one - t.scale(2), b1[..., None, :])
    return t + macs.multiply(ctx.narrow("xor_2"), one - t.scale(2), b2[..., None, :])


def _component_as_bool(party: int, x: AShares, j: int) -> BShares:
    """Arithmetic component j, which two parties know, as boolean shares of a k-bit word."""
    width = x.dtype.itemsize * 8
    zero = np.broadcast_to(np.zeros((), x.dtype), x.shape)  # a read-only view, not a column
    left = x.left if j == party else zero
    right = x.right if j == (party + 1) % 3 else zero
    return BShares(left, right, width)


def arith_to_bool(ctx: Context, x: AShares) -> BShares:
    """Arithmetic shares in Z_2^k → boolean shares of the same k-bit words (A2B).

    A carry-save step, then :func:`~ipa.mpc.adder.add`.
    Cost: ``1 + 2*log2(k)`` rounds,
    ``2*nbytes(k) + sum(3*nbytes(k >> j) for j in range(1, log2(k))) + 1`` bytes per element.
    """
    ctx = ctx.enter(ARITH_TO_BOOL_STEPS)
    parts = [_component_as_bool(ctx.party, x, j) for j in range(3)]
    s, c = carry_save(ctx.narrow("carry_save"), *parts)
    return add(ctx.narrow("add"), s, c)


def sign_bit(ctx: Context, x: AShares) -> BShares:
    """The top bit of each k-bit arithmetic value (``x < 0`` in two's complement) as 1-bit
    boolean shares.

    :func:`arith_to_bool`'s carry-save step, then only the top bit of the sum
    (:func:`ipa.mpc.adder.top_bit`: the generate and the carry out of the low
    k−1 bits by a tree that halves its words), not every carry: 35 bytes per
    64-bit value where a full A2B sends 104.
    Cost: ``2 + log2(k - 1)`` rounds,
    ``2*nbytes(k) + sum(2 * nbytes(2**log2(k - 1) >> j) for j in range(1, log2(k - 1))) + 1``
    bytes per element.
    """
    ctx = ctx.enter(SIGN_BIT_STEPS)
    parts = [_component_as_bool(ctx.party, x, j) for j in range(3)]
    s, c = carry_save(ctx.narrow("carry_save"), *parts)
    return top_bit(ctx.narrow("top"), s, c)


def bool_to_arith(ctx: Context, x: BShares, dtype: npt.DTypeLike = np.uint64) -> AShares:
    """w-bit boolean shares → arithmetic shares in Z_2^k of the same integers (B2A), w ≤ k.

    A carry-save step and :func:`~ipa.mpc.adder.add`, then H2 sends 2 words more than the
    others (``extra``), to open the masked value to H1 and H3.
    Cost: ``2 + 2*log2(k)`` rounds, ``tuple(2*nbytes(k) + sum(3*nbytes(k >> j) for j in range(1, log2(k)))
    + 1 + extra for extra in (0, 2*nbytes(k), 0))`` bytes per element.
    In malicious mode H1 and H3 also confirm the opening to each other (32 bytes each, same round;
    n elements):
    Malicious cost: ``2 + 2*log2(k)`` rounds, ``tuple(2*nbytes(k) + sum(3*nbytes(k >> j) for j in
    range(1, log2(k))) + 1 + extra for extra in (32/n, 2*nbytes(k), 32/n))`` bytes per element.
    """
    ctx = ctx.enter(BOOL_TO_ARITH_STEPS)
    dtype = check_arithmetic_dtype(dtype)
    width = dtype.itemsize * 8
    if x.width > width:
        raise ValueError(f"cannot convert {x.width}-bit values into a {width}-bit ring")
    shape, zero = x.shape, np.zeros(x.shape, dtype)
    # Component 1 (a_1) is known to H1 and H2, component 2 (a_2) to H2 and H3.
    a1 = a2 = zero
    if ctx.party in (0, 1):
        a1 = ctx.narrow("mask_1").draw(Peer.NEXT if ctx.party == 0 else Peer.PREV, shape, dtype)
    if ctx.party in (1, 2):
        a2 = ctx.narrow("mask_2").draw(Peer.NEXT if ctx.party == 1 else Peer.PREV, shape, dtype)
    masks = AShares(*[(zero, a1), (a1, a2), (a2, zero)][ctx.party])  # components (0, a_1, a_2)
    minus_a1 = _component_as_bool(ctx.party, -masks, 1)
    minus_a2 = _component_as_bool(ctx.party, -masks, 2)
    s, c = carry_save(ctx.narrow("carry_save"), x.resize(width), minus_a1, minus_a2)
    y = add(ctx.narrow("add"), s, c)
    # Open y to H1 and H3 only: H2 holds the components each of them lacks.
    step = ctx.narrow("open")
    if ctx.party == 1:
        step.send(Peer.PREV, y.right)  # component 2, for H1
        step.send(Peer.NEXT, y.left)  # component 1, for H3
        return masks
    confirm = ctx.narrow("confirm")
    if ctx.malicious:  # before waiting for H2: the digest goes in the same round as the opening
        _send_confirmation(confirm, y)
    (missing,) = step.receive(Peer.NEXT if ctx.party == 0 else Peer.PREV, y.left)
    if ctx.malicious:
        _check_confirmation(confirm, missing)
    opened = y.left ^ y.right ^ missing
    return AShares(opened, a1) if ctx.party == 0 else AShares(a2, opened)


def _send_confirmation(ctx: Context, y: BShares) -> None:
    """H1 sends H3 a digest of component 1 (which H3 gets from H2), H3 sends H1 one of component 2.

    H1 holds component 1 as ``right``, H3 holds component 2 as ``left``.
    """
    if ctx.party == 0:
        ctx.send(Peer.PREV, digest(f"{ctx.step}/component_1", [y.right]))
    else:
        ctx.send(Peer.NEXT, digest(f"{ctx.step}/component_2", [y.left]))


def _check_confirmation(ctx: Context, missing: np.ndarray) -> None:
    """Abort unless the component H2 sent matches its other holder's digest."""
    other, got = (Peer.PREV, 2) if ctx.party == 0 else (Peer.NEXT, 1)
    (theirs,) = ctx.receive(other, np.zeros(DIGEST_BYTES, np.uint8))
    if not hmac.compare_digest(theirs.tobytes(), digest(f"{ctx.step}/component_{got}", [missing]).tobytes()):
        me, second = ctx.party + 1, 3 if ctx.party == 0 else 1
        raise MaliciousBehaviourError(
            "verified reveal", f"H2 and H{second} sent H{me} different copies of a component"
        )
