"""The query's checkpoints verify a phase's products in bounded chunks (``pipeline.verify``)."""

import numpy as np
import pytest

from ipa.attribution import pipeline
from ipa.errors import MaliciousBehaviourError
from ipa.mpc.checkpoint import CHECKPOINT_STEPS
from ipa.mpc.memory import Tamper
from ipa.mpc.multiply import multiply
from ipa.mpc.sharing import share_arithmetic
from ipa.mpc.step import Family, Steps
from ipa.mpc.testing import opened, run

STEPS = Steps("chunked", "m0", "m1", "m2", check=Family(pipeline.MAX_CHUNKS, CHECKPOINT_STEPS))
N = 100
WORDS = 2 * 3 * N  # pending words of one product of N elements (x, y, z; both components)


def _three_products(ctx, x, y):
    ctx = ctx.enter(STEPS)
    zs = [multiply(ctx.narrow(f"m{i}"), x, y) for i in range(3)]
    pipeline.verify(ctx, "check")
    assert ctx.verifier is None or ctx.verifier.pending == 0
    return zs


@pytest.fixture
def shares():
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 2**64, N, dtype=np.uint64), rng.integers(0, 2**64, N, dtype=np.uint64)
    return x, y, share_arithmetic(x), share_arithmetic(y)


@pytest.mark.parametrize(("limit", "chunks"), [(WORDS, 3), (2 * WORDS, 2), (3 * WORDS, 1), (WORDS // 2, 3)])
def test_products_are_verified_in_chunks_of_at_most_the_limit(monkeypatch, shares, limit, chunks):
    monkeypatch.setattr(pipeline, "VERIFY_CHUNK_WORDS", limit)
    x, y, xs, ys = shares
    result = run(_three_products, xs, ys, security="malicious")
    assert all((z == x * y).all() for z in opened(result))
    checks = {m.step.split("/")[1] for m in result.messages if "/check_" in m.step}
    assert checks == {f"check_{i}" for i in range(chunks)}


def test_semi_honest_mode_sends_nothing_at_the_checkpoints(shares):
    _, _, xs, ys = shares
    result = run(_three_products, xs, ys)
    assert not [m for m in result.messages if "/check" in m.step]


def test_a_phase_beyond_max_chunks_takes_larger_chunks(monkeypatch, shares):
    monkeypatch.setattr(pipeline, "VERIFY_CHUNK_WORDS", 1)
    monkeypatch.setattr(pipeline, "MAX_CHUNKS", 2)
    _, _, xs, ys = shares
    result = run(_three_products, xs, ys, security="malicious")
    assert {m.step.split("/")[1] for m in result.messages if "/check_" in m.step} == {"check_0", "check_1"}


@pytest.mark.parametrize("product", [0, 2])
def test_a_wrong_product_in_any_chunk_aborts(monkeypatch, shares, product):
    monkeypatch.setattr(pipeline, "VERIFY_CHUNK_WORDS", WORDS)
    _, _, xs, ys = shares
    with pytest.raises(MaliciousBehaviourError):
        run(_three_products, xs, ys, security="malicious", tamper=Tamper(1, f"root/m{product}"))
