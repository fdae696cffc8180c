import os

import numpy as np
import pytest

from ipa.errors import ProtocolError
from ipa.mpc.channel import Peer
from ipa.mpc.prss import PRSS


def three_parties() -> list[PRSS]:
    seeds = [os.urandom(16) for _ in range(3)]
    return [PRSS(prev_seed=seeds[(i - 1) % 3], next_seed=seeds[i]) for i in range(3)]


def test_neighbours_draw_the_same_words_and_others_differ():
    p = three_parties()
    a = p[0].draw("s", Peer.NEXT, (100,), np.uint64)
    assert np.array_equal(a, p[1].draw("s", Peer.PREV, (100,), np.uint64))
    assert not np.array_equal(a, p[2].draw("s", Peer.NEXT, (100,), np.uint64))
    assert not np.array_equal(a, p[0].draw("t", Peer.NEXT, (100,), np.uint64))


def test_zero_sharings_sum_to_zero():
    p = three_parties()
    z = [q.zero("z", (3, 50), np.uint32) for q in p]
    assert not (z[0] == 0).all()
    assert (z[0] + z[1] + z[2] == 0).all()
    x = [q.zero_xor("x", (50,), np.uint16) for q in p]
    assert (x[0] ^ x[1] ^ x[2] == 0).all()


def test_random_shares_are_consistent_replicated_shares():
    p = three_parties()
    r = [q.random("r", (64,), np.uint64) for q in p]
    for i in range(3):
        assert np.array_equal(r[i].right, r[(i + 1) % 3].left)
    b = [q.random_bits("b", (64,), 5) for q in p]
    assert all((s.left < 32).all() for s in b)


def test_a_step_cannot_be_drawn_twice():
    p = three_parties()[0]
    p.draw("once", Peer.NEXT, (4,), np.uint64)
    with pytest.raises(ProtocolError, match="drawn twice"):
        p.permutation("once", Peer.NEXT, 4)
    p.draw("once", Peer.PREV, (4,), np.uint64)  # the other neighbour's seed is separate


def test_pairs_agree_on_permutations_and_they_are_permutations():
    p = three_parties()
    perm = p[1].permutation("perm", Peer.NEXT, 1000)
    assert np.array_equal(perm, p[2].permutation("perm", Peer.PREV, 1000))
    assert np.array_equal(np.sort(perm), np.arange(1000))
    assert not np.array_equal(perm, np.arange(1000))
    assert p[0].permutation("empty", Peer.NEXT, 0).shape == (0,)


def test_seeds_must_be_sixteen_bytes():
    with pytest.raises(ValueError, match="16 bytes"):
        PRSS(b"short", os.urandom(16))


def test_draws_span_chunks_as_one_key_stream():
    """A draw longer than a chunk is the AES-CTR key stream of its step, without seams."""
    import hashlib
    import hmac

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from ipa.mpc import prss

    seed = os.urandom(16)
    party = PRSS(prev_seed=os.urandom(16), next_seed=seed)
    count = 3 * prss._CHUNK // 8 + 5  # three chunks and a part
    key = hmac.digest(seed, b"long", hashlib.sha256)[:16]
    stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(bytes(count * 8))
    drawn = party.draw("long", Peer.NEXT, (count,), np.uint64)
    assert np.array_equal(drawn, np.frombuffer(stream, np.uint64))
    drawn[0] = 1  # a new, writable array


def test_zero_sharings_span_chunks():
    p = three_parties()
    shape = (2, 3 * (1 << 20) // 8 // 2 + 3)  # over three chunks of uint64 in all
    z = [q.zero("z", shape, np.uint64) for q in p]
    assert (z[0] + z[1] + z[2] == 0).all()
    x = [q.zero_xor("x", shape, np.uint64) for q in p]
    assert (x[0] ^ x[1] ^ x[2] == 0).all() and x[0].any()


def test_a_key_stream_read_in_any_order_is_the_draw():
    """Block t of a step's stream is the draw's bytes 16·t … 16·t + 15, at both holders,
    whether made in a run (across chunks) or at any counters, repeated or not."""
    p = three_parties()
    blocks = (1 << 16) + 37  # more than one chunk of key stream
    drawn = p[0].draw("s", Peer.NEXT, (16 * blocks,), np.uint8).reshape(blocks, 16)
    stream = p[1].stream("s", Peer.PREV)
    assert np.array_equal(stream.blocks(0, blocks), drawn)
    assert np.array_equal(stream.blocks(5, 1000), drawn[5:1005])
    order = np.random.default_rng(7).permutation(blocks)
    assert np.array_equal(stream.at(order), drawn[order])
    assert np.array_equal(stream.at(np.array([3, 3, 0], np.uint64)), drawn[[3, 3, 0]])
    assert stream.at(np.array([], np.uint64)).shape == (0, 16)
    other = p[2].stream("s", Peer.NEXT)  # another pair's seed
    assert not np.array_equal(other.blocks(0, 4), drawn[:4])


def test_a_key_stream_is_its_steps_one_draw():
    p = three_parties()
    p[0].stream("s", Peer.NEXT)
    with pytest.raises(ProtocolError, match="drawn twice"):
        p[0].draw("s", Peer.NEXT, (4,), np.uint64)
    p[0].draw("t", Peer.PREV, (4,), np.uint64)
    with pytest.raises(ProtocolError, match="drawn twice"):
        p[0].stream("t", Peer.PREV)


def test_a_key_stream_makes_runs_of_blocks_at_any_counters():
    p = three_parties()
    drawn = p[0].draw("s", Peer.NEXT, (16 * 40_000,), np.uint8).reshape(-1, 16)
    stream = p[1].stream("s", Peer.PREV)
    first = np.array([9_000, 0, 33, 9_000], np.uint64)
    expected = np.concatenate([drawn[f : f + 7] for f in first])
    assert np.array_equal(stream.at(first, 7), expected)
    first = np.random.default_rng(3).integers(0, 40_000 - 5, 30_000).astype(np.uint64)  # > 1 chunk of 5
    runs = drawn[first.astype(np.int64)[:, None] + np.arange(5)]
    assert np.array_equal(stream.at(first, 5), runs.reshape(-1, 16))
