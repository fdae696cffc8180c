"""Checks that catch one deviating helper: consistent inputs and confirmed openings.

Malicious-security building blocks (``docs/malicious.md``); the query does
not use them yet, so a query is NOT malicious-secure yet. The checks use the
redundancy of replicated sharing: every component x_j is held by two parties
(party j as ``left``, party j−1 as ``right``), so what one of them sends or
holds can be confirmed by the other with a SHA-256 digest (32 bytes, whatever
the column's length).

``check_consistent`` (input consistency): the two holders of each component
compare a digest of their copies of a whole list of columns, in both
directions, so an inconsistent upload from the report collector, or a helper
that altered its copy, is caught by the honest holder.

``verified_reveal``: an opening whose value is confirmed by its second holder.
Party i gets its missing component x_{i+2} from its previous neighbour (as in
:func:`ipa.mpc.reveal.reveal`) and a digest of it from its next neighbour, the
other holder; it aborts if they differ. One of the two senders is honest, so a
wrong value, a wrong digest or a dropped bit is caught by the receiver.

``check_zero``: shared values shown to be zero without opening them: each
party sends its next neighbour a digest of ``v_i + v_{i+1}``, which that one
compares with its ``−v_{i+2}``; the one ordered pair of honest neighbours
holds every component, so a nonzero value is caught (a checkpoint's last step,
:mod:`ipa.mpc.checkpoint`).

Each digest is bound to the step path (and the component's index), and to
the dtype and shape of every array, so a digest cannot be replayed at another
step, for another component or for another layout. The digests of
``verified_reveal`` and ``check_zero``, the bulk of malicious mode's hashing,
take the arrays' bytes through Poly1305 under a one-time key of the two
neighbours who compare them (``PRSS.mac_key``, from their shared seed: the
third helper cannot compute it), about 4× faster than SHA-256; the digest is
still 32 bytes, SHA-256 of the label, the headers and the 16-byte tag
(:class:`_Digest` argues the soundness). ``check_consistent`` hashes with
SHA-256 alone (its digests compare copies that both holders already hold).
A failed check raises :class:`~ipa.errors.MaliciousBehaviourError` naming the
check and the two helpers whose copies differ, never a value or a digest.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.poly1305 import Poly1305

from ipa.errors import MaliciousBehaviourError
from ipa.mpc.channel import Peer
from ipa.mpc.context import Context
from ipa.mpc.replicated import BShares, Shares
from ipa.mpc.step import Steps

__all__ = [
    "CONSISTENCY_STEPS",
    "DIGEST_BYTES",
    "REVEAL_STEPS",
    "Blocks",
    "check_consistent",
    "check_zero",
    "digest",
    "open_confirmed",
    "verified_reveal",
]

DIGEST_BYTES = 32

CONSISTENCY_STEPS = Steps("check_consistent", "to_next", "to_prev")
"""``to_next``: each party's digest of its ``right`` copies; ``to_prev``: of its ``left`` copies."""

REVEAL_STEPS = Steps("verified_reveal", "value", "confirm")
"""``value``: the missing component, to the next party; ``confirm``: a digest of it, to the previous one."""

_LIKE = np.zeros(DIGEST_BYTES, np.uint8)


_HASH_BLOCK_BYTES = 1 << 20
"""Bytes per block when an array is hashed in pieces (a non-contiguous one, or a computed value)."""


def digest(step: str, arrays: Sequence[np.ndarray], key: bytes | None = None) -> np.ndarray:
    """SHA-256 of ``arrays`` (their dtypes, shapes and bytes) bound to ``step``, as 32 ``uint8``.

    With a ``key`` (a one-time key of two neighbours, :func:`_pair_key`) the
    arrays' bytes go through Poly1305 under it, about 4× faster than SHA-256,
    and only its 16-byte tag into the SHA-256 (:class:`_Digest`).
    Hashes contiguous arrays in place (no copy), others block by block.
    """
    h = _Digest(step, key)
    for a in map(np.asarray, arrays):
        _update(h, a, a.__getitem__)
    return h.digest()


class _Digest:
    """SHA-256 of a label, of every array's header and of its bytes or, keyed, of the bytes' Poly1305 tag.

    Keyed (the confirmations of openings and the zero checks): the bytes are
    authenticated by Poly1305 (Bernstein, FSE 2005) under a one-time key that
    only the two neighbours comparing the digest hold (:func:`_pair_key`), a
    pseudo-random function of their PRSS seed that the third helper cannot
    compute; nothing the third helper chooses depends on it. For any two
    different byte strings fixed independently of the key, their tags are
    equal with probability at most 8·⌈L/16⌉/2^106 over the key (L bytes, the
    ε-almost-Δ-universal bound of Poly1305's polynomial); for 2^34 bytes, at
    most 2^-69. A comparison of the SHA-256 digests is then as sound as
    comparing the bytes, up to that and SHA-256 collisions, and each key
    authenticates one comparison only (one label per step, pair and check).
    """

    def __init__(self, label: str, key: bytes | None = None) -> None:
        self._sha = _hasher(label)
        self._mac = None if key is None else Poly1305(key)

    def header(self, data: bytes) -> None:
        self._sha.update(data)

    def update(self, data: np.ndarray) -> None:
        """Add bytes (a contiguous ``uint8`` array)."""
        if self._mac is None:
            self._sha.update(data.data)
        else:
            self._mac.update(data.data)

    def digest(self) -> np.ndarray:
        if self._mac is not None:
            self._sha.update(self._mac.finalize())
            self._mac = None
        return np.frombuffer(self._sha.digest(), np.uint8)


def _pair_key(ctx: Context, label: str, peer: Peer) -> bytes:
    """The Poly1305 key of ``label`` shared with neighbour ``peer`` (:meth:`ipa.mpc.prss.PRSS.mac_key`)."""
    return ctx.prss.mac_key(label, peer)


def _hasher(step: str) -> hashlib._Hash:
    return hashlib.sha256(b"ipa/verify\0" + step.encode() + b"\0")


def _update(h: _Digest, like: np.ndarray, block: Callable[[Any], np.ndarray]) -> None:
    """Hash the header of an array shaped like ``like``, then its bytes in C order.

    ``block(rows)`` gives the array's rows ``rows`` (along axis 0), over blocks
    of about :data:`_HASH_BLOCK_BYTES` (views of a contiguous array, copies of
    a strided one): the bytes hashed are the same either way.
    """
    h.header(f"{like.dtype.str}{like.shape}\0".encode())
    if like.ndim == 0:
        h.update(np.ascontiguousarray(block(...)).reshape(-1).view(np.uint8))
        return
    rows = max(1, _HASH_BLOCK_BYTES // max(like[:1].nbytes, 1))
    for start in range(0, len(like), rows):
        part = np.ascontiguousarray(block(slice(start, start + rows)))
        if part.size:
            h.update(part.reshape(-1).view(np.uint8))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return hmac.compare_digest(a.tobytes(), b.tobytes())


def check_consistent(ctx: Context, *columns: Shares) -> None:
    """Abort unless both holders of every component hold the same copy of every column.

    Input consistency: the hash comparison of replicated copies (ipa-core's
    share validation does it in one direction; here both), over whole columns.

    Inputs: any number of share columns (arithmetic or boolean, any shape);
    every party passes the same list. Output: none.

    1. Party i sends to its next neighbour (step ``to_next``) the digest of its
       ``right`` copies (component i+1, which the next neighbour holds as ``left``),
    2. and to its previous neighbour (step ``to_prev``) the digest of its ``left``
       copies (component i, which the previous neighbour holds as ``right``).
    3. Each party compares both received digests with its own and aborts on a
       difference.

    Cost: ``1`` round, ``2 * 32 / n`` bytes per row (n rows in all columns together).

    A party learns only digests of components it already holds.

    Raises MaliciousBehaviourError("input consistency") if the copies of a
    component differ between its two holders (a report collector that sent
    inconsistent shares, a helper that altered its copy or a digest).
    """
    ctx = ctx.enter(CONSISTENCY_STEPS)
    forward, backward = ctx.narrow("to_next"), ctx.narrow("to_prev")
    me, prev, nxt = ctx.party, Peer.PREV.of(ctx.party), Peer.NEXT.of(ctx.party)
    # Both holders of component j hash it under the same label.
    mine_right = digest(f"{ctx.step}/component_{nxt}", [c.right for c in columns])
    mine_left = digest(f"{ctx.step}/component_{me}", [c.left for c in columns])
    forward.send(Peer.NEXT, mine_right)
    backward.send(Peer.PREV, mine_left)
    (theirs_left,) = forward.receive(Peer.PREV, _LIKE)  # prev's right = my left
    (theirs_right,) = backward.receive(Peer.NEXT, _LIKE)  # next's left = my right
    if not _same(theirs_left, mine_left):
        raise MaliciousBehaviourError(
            "input consistency", f"H{prev + 1} and H{me + 1} hold different copies of component {me}"
        )
    if not _same(theirs_right, mine_right):
        raise MaliciousBehaviourError(
            "input consistency", f"H{me + 1} and H{nxt + 1} hold different copies of component {nxt}"
        )


def verified_reveal(ctx: Context, x: Shares) -> np.ndarray:
    """Open ``x`` to all three helpers, each opening confirmed by the component's second holder.

    Uses the redundancy of replicated sharing that the honest-majority
    protocols of Furukawa et al. (EUROCRYPT'17) and Araki et al. (S&P'17)
    rely on: every component has two holders, at most one of them corrupt.
    The second holder sends a digest instead of a second copy (ipa-core's
    ``malicious_reveal`` sends the copy), 32 bytes instead of n words.

    Inputs: a share column (arithmetic over Z_2^k or boolean, any shape).
    Output: the opened values, at every party.

    1. Party i sends its ``left`` component x_i to its next neighbour (step ``value``),
    2. and a digest of its ``right`` component x_{i+1} to its previous neighbour
       (step ``confirm``), which misses exactly x_{i+1}.
    3. Each party compares the digest of the component it received with the
       digest from its other neighbour and aborts on a difference.

    Cost: ``1`` round, ``1 + 32 / (n * b)`` words per element (n elements of ``b`` bytes).

    Every party learns the value, as with :func:`ipa.mpc.reveal.reveal`: open
    only masked values, or values that a passed checkpoint has verified.

    Raises MaliciousBehaviourError("verified reveal") if the component received
    differs from its second holder's copy.
    """
    ctx = ctx.enter(REVEAL_STEPS)
    (opened,) = open_confirmed(ctx.narrow("value"), ctx.narrow("confirm"), [x])
    return opened


def open_confirmed(
    value: Context, confirm: Context, xs: Sequence[Shares], *, into_right: bool = False
) -> list[np.ndarray]:
    """:func:`verified_reveal` of several columns at once: one message each way, one digest.

    The components go at step ``value``, the digest at step ``confirm`` (the
    two may be one step: the messages go to different neighbours). This is
    how :func:`ipa.mpc.reveal.reveal` opens in malicious mode, at its caller's
    step, and how a checkpoint opens its masked differences. With
    ``into_right`` the opened values are summed into the ``right`` arrays
    (the caller's own temporaries, written by nothing else), not new ones.

    The digest is keyed by the pair who compares it (sender and receiver of
    the confirmation), label ``<confirm step>/confirm``: a corrupt sender of
    the value does not know the key of the honest pair that confirms it.
    """
    value.send(Peer.NEXT, *[x.left for x in xs])
    label = f"{confirm.step}/confirm"
    confirm.send(Peer.PREV, digest(confirm.step, [x.right for x in xs], _pair_key(confirm, label, Peer.PREV)))
    missing = value.receive(Peer.PREV, *[x.left for x in xs])
    (expected,) = confirm.receive(Peer.NEXT, _LIKE)
    if not _same(digest(confirm.step, missing, _pair_key(confirm, label, Peer.NEXT)), expected):
        me, prev, nxt = value.party, Peer.PREV.of(value.party), Peer.NEXT.of(value.party)
        raise MaliciousBehaviourError(
            "verified reveal", f"H{prev + 1} and H{nxt + 1} sent H{me + 1} different copies of a component"
        )
    return [
        _sum(x.left, x.right, m, isinstance(x, BShares), into_right) for x, m in zip(xs, missing, strict=True)
    ]


def _sum(a: np.ndarray, b: np.ndarray, c: np.ndarray, boolean: bool, into_b: bool = False) -> np.ndarray:
    op = np.bitwise_xor if boolean else np.add
    out = op(b, a, out=b) if into_b else op(a, b)
    return op(out, c, out=out)


@dataclass(frozen=True)
class Blocks:
    """A share column that :func:`check_zero` computes block by block and never holds whole.

    ``block(k)`` for ``0 ≤ k < count`` gives block k's shares (one kind, any
    shapes). The check hashes the blocks in order, so every party must cut the
    column alike (cut by shapes, never by data).
    """

    count: int
    block: Callable[[int], Shares]


def check_zero(ctx: Context, checks: Mapping[str, Sequence[Shares | Blocks]]) -> None:
    """Abort unless every shared value of every named check is zero, without opening anything.

    Inputs: named lists of share columns (arithmetic or boolean, any shapes;
    or :class:`Blocks` computed piece by piece), the same at every party.
    Output: none.

    1. Party i sends its next neighbour, for each check, the digest of
       ``−(v_i + v_{i+1})`` (XOR for booleans) over the check's columns.
    2. Party i+1 compares it with the digest of ``v_{i+2}`` (its ``right``
       copies); v = 0 exactly when they agree.

    With one corrupt helper c there is exactly one ordered pair of honest
    neighbours (c+1, c+2); together they hold every component, each from
    its honest holder, so a nonzero v is caught by H(c+2) with certainty up to
    SHA-256 collisions and a Poly1305 tag collision under the pair's key, which
    c does not know (at most 2^-69 for 2^34 bytes, :class:`_Digest`). The
    sender's digest is of v_{i+2}, which the receiver holds, when v = 0; when
    v ≠ 0 the run aborts. Both digests are made in one
    pass over the values, block by block (nothing of the values' size is held).

    Cost: ``1`` round, ``32 * k / n`` bytes per element (k checks, n elements in all).

    Raises MaliciousBehaviourError naming the first check whose values are not all zero.
    """
    names = list(checks)
    mine, expected = [], []
    for name in names:
        label = f"{ctx.step}/{name}"
        send = _Digest(label, _pair_key(ctx, f"{label}/zero", Peer.NEXT))
        keep = _Digest(label, _pair_key(ctx, f"{label}/zero", Peer.PREV))
        for column in checks[name]:
            for shares in _pieces(column):
                _hash_zero_check(send, keep, shares)
        mine.append(send.digest())
        expected.append(keep.digest())
    ctx.send(Peer.NEXT, *mine)
    received = ctx.receive(Peer.PREV, *[_LIKE] * len(names))
    for name, theirs, ours in zip(names, received, expected, strict=True):
        if not _same(theirs, ours):
            me, prev = ctx.party, Peer.PREV.of(ctx.party)
            raise MaliciousBehaviourError(name, f"H{me + 1} found a nonzero value with H{prev + 1}'s digest")


def _pieces(column: Shares | Blocks) -> Iterator[Shares]:
    if isinstance(column, Blocks):
        yield from (column.block(k) for k in range(column.count))
    else:
        yield column


def _hash_zero_check(send: _Digest, keep: _Digest, x: Shares) -> None:
    """Hash ``−(left + right)`` (``left ^ right`` for booleans) into ``send`` and ``right`` into
    ``keep``, each as :func:`digest` would hash one array, one block of rows at a time."""
    boolean = isinstance(x, BShares)
    header = f"{x.left.dtype.str}{x.left.shape}\0".encode()
    send.header(header)
    keep.header(header)
    left, right = (x.left[None], x.right[None]) if x.left.ndim == 0 else (x.left, x.right)
    rows = max(1, _HASH_BLOCK_BYTES // max(left[:1].nbytes, 1))
    for start in range(0, len(left), rows):
        part = slice(start, start + rows)
        if boolean:
            pair = np.bitwise_xor(left[part], right[part])
        else:
            pair = np.add(left[part], right[part])
            np.negative(pair, out=pair)
        mine = np.ascontiguousarray(right[part])
        if pair.size:
            send.update(pair.reshape(-1).view(np.uint8))
            keep.update(mine.reshape(-1).view(np.uint8))
