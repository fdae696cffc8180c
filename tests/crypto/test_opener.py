"""open_many: one open per distinct message, the same answer inline and in worker processes."""

import os

import numpy as np
import pytest

from ipa.crypto import opener
from ipa.crypto.hpke import PrivateKey, seal
from ipa.crypto.opener import group_identical, open_many


@pytest.fixture(scope="module")
def material():
    keys = {1: PrivateKey.generate(), 7: PrivateKey.generate()}
    infos = {1: b"one", 7: b"seven"}
    plain = [os.urandom(16) for _ in range(30)]
    key_ids = np.array([1 if i % 3 else 7 for i in range(30)], dtype=np.uint8)
    sealed = [seal(keys[k].public_key(), p, infos[k]) for k, p in zip(key_ids.tolist(), plain, strict=True)]
    rows = [i % 30 for i in range(90)]  # each message three times
    sealed_rows = np.frombuffer(b"".join(sealed[r] for r in rows), dtype=np.uint8).reshape(90, -1).copy()
    sealed_rows[5, 40] ^= 1  # one corrupt copy: a distinct message that fails
    expected = np.frombuffer(b"".join(plain[r] for r in rows), dtype=np.uint8).reshape(90, 16)
    return keys, infos, key_ids[rows], sealed_rows, expected


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_open_many(material, workers, monkeypatch):
    keys, infos, key_ids, sealed, expected = material
    monkeypatch.setattr(opener, "MIN_PARALLEL", 1)  # use the worker processes even for a tiny batch
    plain, ok, distinct = open_many(keys, infos, key_ids, sealed, 16, workers=workers)
    assert distinct == 31
    assert ok.sum() == 89 and not ok[5]
    assert (plain[ok] == expected[ok]).all() and not plain[5].any()


def test_unknown_key_ids_and_empty_input(material):
    keys, infos, key_ids, sealed, _ = material
    _, ok, _ = open_many({1: keys[1]}, infos, key_ids, sealed, 16, workers=1)
    assert not ok[key_ids == 7].any()
    plain, ok, distinct = open_many(keys, infos, np.zeros(0, np.uint8), np.zeros((0, 64), np.uint8), 16)
    assert plain.shape == (0, 16) and ok.shape == (0,) and distinct == 0


def test_group_identical_is_exact_even_when_hashes_collide():
    c0, c1 = (int(m) for m in opener._MULTIPLIERS[:2])
    crafted = np.array([c1, (-c0) % 2**64], dtype="<u8").view(np.uint8)  # hashes like all zeros
    rows = np.stack([crafted, np.zeros(16, np.uint8), crafted, np.zeros(16, np.uint8)])
    first, inverse = group_identical(rows)
    assert sorted(first.tolist()) == [0, 1]
    assert inverse[0] == inverse[2] != inverse[1] == inverse[3]
    first, inverse = group_identical(rows[:, :5], rows[:, 5:])  # the same rows in two parts
    assert sorted(first.tolist()) == [0, 1] and inverse[0] == inverse[2] != inverse[1]
