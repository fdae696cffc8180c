"""Pseudo-random secret sharing (PRSS): correlated randomness without messages.

Each pair of neighbours holds a 128-bit seed agreed at query start. A draw
under a step name expands the seed with AES-128-CTR under a key derived by
HMAC-SHA256(seed, step), so both holders of a seed draw the same words for the
same step and nobody else can predict them. Drawing twice under one step would
reuse randomness and is refused.

Party i shares ``prev`` seed with party i-1 and ``next`` seed with party i+1,
so party i's draws give it the components ``(x_i, x_{i+1})`` of a random
replicated sharing, and ``next - prev`` summed over the parties is zero.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from randomgen import AESCounter

from ipa.errors import ProtocolError
from ipa.mpc.channel import Channel, Peer
from ipa.mpc.replicated import AShares, BShares
from ipa.mpc.ring import bool_dtype, mask

__all__ = ["PRSS", "SEED_BYTES", "KeyStream", "stream_bytes"]

SEED_BYTES = 16
_ZERO_NONCE = bytes(16)
_CHUNK = 1 << 20
"""Bytes of key stream made per call into the output: the stream is written in
place, so a draw allocates its result once (plus one chunk of zeros to encrypt)."""
_ZEROS = bytes(_CHUNK)


class PRSS:
    """One party's PRSS: seeds shared with its previous and next neighbour."""

    def __init__(self, prev_seed: bytes, next_seed: bytes) -> None:
        if len(prev_seed) != SEED_BYTES or len(next_seed) != SEED_BYTES:
            raise ValueError(f"PRSS seeds must be {SEED_BYTES} bytes")
        self._seeds = {Peer.PREV: prev_seed, Peer.NEXT: next_seed}
        self._drawn: set[tuple[str, Peer]] = set()
        self._lock = threading.Lock()

    def draw(self, step: str, peer: Peer, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Uniform words of ``dtype`` known to this party and neighbour ``peer`` only (a new,
        writable array)."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return _ctr_bytes(self._key(step, peer), 0, nbytes).view(dtype).reshape(shape)

    def stream(self, step: str, peer: Peer) -> KeyStream:
        """The key stream of one step with ``peer``, read in any order (:class:`KeyStream`).

        It counts as the step's one draw: :meth:`draw` at the same step and
        peer is refused afterwards, and the other way round.
        """
        return KeyStream(self._key(step, peer))

    def _key(self, step: str, peer: Peer) -> bytes:
        """The AES key for one step with one neighbour; each may be used only once."""
        with self._lock:
            if (step, peer) in self._drawn:
                raise ProtocolError(f"PRSS step {step!r} drawn twice with {peer.name}")
            self._drawn.add((step, peer))
        return hmac.digest(self._seeds[peer], step.encode(), hashlib.sha256)[:16]

    def derived_seeds(self, label: str) -> tuple[bytes, bytes]:
        """The (prev, next) seeds of a PRSS derived from this one for ``label``: ``HMAC(seed, label)``.

        Each derived seed is a pseudo-random function of one shared seed, so
        the same two neighbours hold it and no message is needed; a worker
        triple (``docs/scaling.md``) gets those of ``worker/<k>``, the W workers of a
        helper together (:mod:`ipa.mpc.collective`) those of ``workers``. ``label``
        must never be a step path drawn from this PRSS (steps start with
        ``root`` or ``setup``), or a derived seed would equal that step's key.
        """
        return (
            hmac.digest(self._seeds[Peer.PREV], label.encode(), hashlib.sha256)[:SEED_BYTES],
            hmac.digest(self._seeds[Peer.NEXT], label.encode(), hashlib.sha256)[:SEED_BYTES],
        )

    def mac_key(self, label: str, peer: Peer) -> bytes:
        """A 32-byte one-time MAC key shared with ``peer`` only: ``HMAC(seed, "mac/" + label)``.

        For comparisons of digests between two neighbours
        (:mod:`ipa.mpc.verify`): the third party cannot compute it. Each label
        must key one comparison; ``mac/…`` is never a step path (those start
        with ``root``, ``setup`` or a worker's ``w<k>``) nor a derivation label.
        """
        return hmac.digest(self._seeds[peer], b"mac/" + label.encode(), hashlib.sha256)

    def derive(self, label: str) -> PRSS:
        """A PRSS of its own seeds, derived for ``label`` (:meth:`derived_seeds`)."""
        return PRSS(*self.derived_seeds(label))

    def zero(self, step: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """This party's part of a three-way additive sharing of zero (a new, writable array)."""
        out = self.draw(step, Peer.NEXT, shape, dtype)
        self._fold(step, Peer.PREV, out, np.subtract)
        return out

    def zero_xor(self, step: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """This party's part of a three-way XOR sharing of zero (a new, writable array)."""
        out = self.draw(step, Peer.NEXT, shape, dtype)
        self._fold(step, Peer.PREV, out, np.bitwise_xor)
        return out

    def _fold(self, step: str, peer: Peer, out: np.ndarray, op: np.ufunc) -> None:
        """``out = op(out, draw(step, peer))`` in place, one chunk of the draw at a time."""
        stream = Cipher(algorithms.AES(self._key(step, peer)), modes.CTR(_ZERO_NONCE)).encryptor()
        flat = out.reshape(-1)  # a view: draws are contiguous
        per_chunk = _CHUNK // out.dtype.itemsize
        for start in range(0, flat.size, per_chunk):
            part = flat[start : start + per_chunk]
            words = np.frombuffer(stream.update(memoryview(_ZEROS)[: part.nbytes]), out.dtype)
            op(part, words, out=part)

    def random(self, step: str, shape: tuple[int, ...], dtype: np.dtype) -> AShares:
        """Replicated arithmetic shares of a uniform value nobody knows."""
        return AShares(self.draw(step, Peer.PREV, shape, dtype), self.draw(step, Peer.NEXT, shape, dtype))

    def random_bits(self, step: str, shape: tuple[int, ...], width: int) -> BShares:
        """Replicated boolean shares of a uniform ``width``-bit value nobody knows."""
        dtype, m = bool_dtype(width), mask(width)
        return BShares(
            self.draw(step, Peer.PREV, shape, dtype) & m, self.draw(step, Peer.NEXT, shape, dtype) & m, width
        )

    def permutation(self, step: str, peer: Peer, n: int) -> np.ndarray:
        """A uniform permutation of ``range(n)`` known to this party and ``peer`` only.

        Fisher–Yates driven by AES-128-CTR (randomgen's ``AESCounter``, AES-NI)
        keyed from the PRSS seed and step: unbiased, and 3× faster than sorting
        random keys, which matters because every shuffle draws three.
        """
        return self.generator(step, peer).permutation(n)

    def generator(self, step: str, peer: Peer) -> np.random.Generator:
        """A numpy Generator known to this party and ``peer`` only: AES-128-CTR (randomgen's
        ``AESCounter``) keyed from the PRSS seed and step, for draws beyond words (permutations,
        hypergeometric counts). Both holders draw the same values if they make the same calls
        in the same order."""
        key = int.from_bytes(self._key(step, peer), "little")
        return np.random.Generator(AESCounter(key=key))


def _ctr_bytes(key: bytes, block: int, nbytes: int) -> np.ndarray:
    """``nbytes`` of the AES-128-CTR key stream of ``key`` from 16-byte block ``block`` on (a new
    ``uint8`` array)."""
    return stream_bytes(Cipher(algorithms.AES(key), modes.CTR(block.to_bytes(16, "big"))).encryptor(), nbytes)


def stream_bytes(stream: CipherContext, nbytes: int) -> np.ndarray:
    """The next ``nbytes`` of a CTR ``stream``'s key stream (a new, writable ``uint8`` array),
    encrypted a chunk of zeros at a time straight into the result."""
    out = np.empty(nbytes + 15, np.uint8)  # update_into wants a block less one byte to spare
    for start in range(0, nbytes, _CHUNK):
        size = min(_CHUNK, nbytes - start)
        stream.update_into(memoryview(_ZEROS)[:size], out.data[start:])
    return out[:nbytes]


class KeyStream:
    """The AES-128-CTR key stream of one PRSS step, by 16-byte block, read in any order.

    Block t is ``AES_k(t)`` (t as a big-endian 128-bit counter), the block
    :meth:`PRSS.draw` would have made at byte 16·t of the same step: so a
    party can draw a long run of blocks, and later make again just the
    blocks it needs, in the order it needs them (:meth:`at`, AES in ECB mode
    on the counters), instead of gathering them from the first draw.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def blocks(self, start: int, count: int) -> np.ndarray:
        """Blocks ``start … start + count − 1``, as a new ``(count, 16)`` ``uint8`` array."""
        return _ctr_bytes(self._key, start, 16 * count).reshape(count, 16)

    def at(self, counters: np.ndarray, width: int = 1) -> np.ndarray:
        """Blocks ``c, c + 1, …, c + width − 1`` for each ``c`` of ``counters`` (``uint64``), in that
        order, as a new ``(len(counters)·width, 16)`` ``uint8`` array.

        The counters are written big-endian into a buffer of one chunk, reused,
        and encrypted from it into the result: nothing of the result's size
        is allocated but the result.
        """
        counters = np.asarray(counters, np.uint64).reshape(-1)
        per = max(1, (_CHUNK // 16) // width)  # counters per chunk
        n = len(counters) * width
        cipher = Cipher(algorithms.AES(self._key), modes.ECB()).encryptor()
        out = np.empty(16 * n + 15, np.uint8)
        buffer = np.zeros((min(len(counters), per), width, 2), ">u8")  # big-endian, as CTR counts
        steps = np.arange(width, dtype=np.uint64)
        for begin in range(0, len(counters), per):
            part = counters[begin : begin + per]
            chunk = buffer[: len(part)]
            np.add(part[:, None], steps, out=chunk[:, :, 1], casting="unsafe")  # high words stay zero
            cipher.update_into(chunk.view(np.uint8).reshape(-1).data, out.data[16 * width * begin :])
        return out[: 16 * n].reshape(n, 16)


def agree_seeds(channel: Channel, step: str = "setup/prss") -> PRSS:
    """Set up PRSS over a channel: each party draws, from the OS CSPRNG, the seed it
    shares with its next neighbour and sends it there (the channel must be
    confidential, e.g. TLS). 1 round, 16 bytes per party.
    """
    mine = os.urandom(SEED_BYTES)
    channel.send(step, Peer.NEXT, [np.frombuffer(mine, np.uint8)])
    (theirs,) = channel.receive(step, Peer.PREV, [np.zeros(SEED_BYTES, np.uint8)])
    return PRSS(prev_seed=theirs.tobytes(), next_seed=mine)
