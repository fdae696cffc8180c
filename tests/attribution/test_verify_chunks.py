"""The query's checkpoints verify a phase's products in bounded chunks, during the phase
(``pipeline.Verification``)."""

import numpy as np
import pytest

from ipa.attribution import pipeline
from ipa.errors import MaliciousBehaviourError
from ipa.mpc.checkpoint import CHECKPOINT_STEPS
from ipa.mpc.memory import Tamper
from ipa.mpc.multiply import inner_product, matmul, multiply
from ipa.mpc.replicated import AShares
from ipa.mpc.sharing import reconstruct, share_arithmetic
from ipa.mpc.step import Family, Steps
from ipa.mpc.testing import opened, run
from ipa.mpc.verifier import Product

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


@pytest.mark.parametrize(("limit", "chunks"), [(WORDS, 3), (2 * WORDS, 2), (3 * WORDS, 1), (WORDS // 2, 6)])
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


MANY = Steps("spilling", products=Family(12), check=Family(pipeline.MAX_CHUNKS, CHECKPOINT_STEPS))


def _twelve_products(ctx, x, y):
    """Twelve products in a phase: the verifier never holds more than the limit (it spills)."""
    ctx = ctx.enter(MANY)
    phase = pipeline.Verification(ctx, "check")
    zs, most = [], 0
    for i in range(12):
        zs.append(multiply(ctx.narrow("products", i), x, y))
        most = max(most, ctx.verifier.pending_words if ctx.verifier else 0)
    phase.close()
    assert ctx.verifier is None or ctx.verifier.pending == 0
    return zs, most


def _opened_products(result):
    return [reconstruct([out[0][i] for out in result.outputs]) for i in range(12)]


def test_a_phase_spills_as_soon_as_the_limit_is_passed(monkeypatch, shares):
    monkeypatch.setattr(pipeline, "VERIFY_CHUNK_WORDS", 2 * WORDS)
    x, y, xs, ys = shares
    result = run(_twelve_products, xs, ys, security="malicious")
    assert all((z == x * y).all() for z in _opened_products(result))
    assert max(most for _, most in result.outputs) <= 2 * WORDS
    steps = {m.step.split("/")[1] for m in result.messages if "/check_" in m.step}
    checks = sorted(int(step[len("check_") :]) for step in steps)
    # spills after products 3, 5, 7, 9 and 11 verify two each and keep the last pending; close the rest
    assert checks == list(range(6))
    semi_honest = run(_twelve_products, xs, ys)
    assert not [m for m in semi_honest.messages if "/check" in m.step]


@pytest.mark.parametrize("product", [2, 4, 11])
def test_a_product_a_spill_kept_pending_is_verified_later(monkeypatch, shares, product):
    monkeypatch.setattr(pipeline, "VERIFY_CHUNK_WORDS", 2 * WORDS)
    _, _, xs, ys = shares
    with pytest.raises(MaliciousBehaviourError):
        run(_twelve_products, xs, ys, security="malicious", tamper=Tamper(1, f"root/products_{product}"))


def test_every_checkpoint_verifies_at_most_the_limit_however_many_there_are(monkeypatch, shares):
    limit = WORDS // 3
    monkeypatch.setattr(pipeline, "VERIFY_CHUNK_WORDS", limit)
    verified: list[int] = []
    checkpoint = pipeline.checkpoint

    def counting(ctx):
        verified.append(ctx.verifier.pending_words)
        checkpoint(ctx)

    monkeypatch.setattr(pipeline, "checkpoint", counting)
    x, y, xs, ys = shares
    result = run(_twelve_products, xs, ys, security="malicious")
    assert all((z == x * y).all() for z in _opened_products(result))
    checks = {m.step.split("/")[1] for m in result.messages if "/check_" in m.step}
    # each product in four slices of 33, 33, 33 and 1 elements, one checkpoint each
    assert checks == {f"check_{i}" for i in range(48)}
    assert len(verified) == 3 * 48 and max(verified) <= limit


def test_the_last_checkpoint_of_a_phase_takes_the_rest(monkeypatch, shares):
    monkeypatch.setattr(pipeline, "VERIFY_CHUNK_WORDS", WORDS // 3)
    monkeypatch.setattr(pipeline, "MAX_CHUNKS", 10)
    x, y, xs, ys = shares
    result = run(_twelve_products, xs, ys, security="malicious")
    assert all((z == x * y).all() for z in _opened_products(result))
    checks = {m.step.split("/")[1] for m in result.messages if "/check_" in m.step}
    assert checks == {f"check_{i}" for i in range(10)}


SLICED = Steps("sliced", "inner", "broadcast", "matrix", check=Family(pipeline.MAX_CHUNKS, CHECKPOINT_STEPS))


def _large_products(ctx, f, v, col):
    """A sum of products (8 terms per output), a broadcast elementwise product, a matrix product."""
    ctx = ctx.enter(SLICED)
    phase = pipeline.Verification(ctx, "check")
    inner = inner_product(ctx.narrow("inner"), f, f, axis=0)
    wide = multiply(ctx.narrow("broadcast"), col, v)  # (4, 1) · (4, N) → (4, N)
    square = matmul(ctx.narrow("matrix"), v, v)
    phase.close()
    return inner, wide, square


@pytest.mark.parametrize("tampered", [None, "inner", "broadcast", "matrix"])
def test_products_larger_than_the_limit_are_verified_in_slices(monkeypatch, tampered):
    monkeypatch.setattr(pipeline, "VERIFY_CHUNK_WORDS", 200)
    rng = np.random.default_rng(7)
    f = rng.integers(0, 2**64, (8, N), dtype=np.uint64)
    v = rng.integers(0, 2**64, (4, N), dtype=np.uint64)
    col = rng.integers(0, 2**64, (4, 1), dtype=np.uint64)
    inputs = share_arithmetic(f), share_arithmetic(v), share_arithmetic(col)
    if tampered:
        with pytest.raises(MaliciousBehaviourError):
            run(_large_products, *inputs, security="malicious", tamper=Tamper(2, f"root/{tampered}"))
        return
    result = run(_large_products, *inputs, security="malicious")
    inner, wide, square = (reconstruct([out[i] for out in result.outputs]) for i in range(3))
    assert inner.tolist() == (f * f).sum(0, dtype=np.uint64).tolist()
    assert wide.tolist() == (col * v).tolist()
    assert square.tolist() == (v @ v.T).tolist()
    checks = {m.step.split("/")[1] for m in result.messages if "/check_" in m.step}
    assert len(checks) > 3 * 8  # the sum of products alone is 34·N words, in slices of at most 200


def test_pieces_are_views_of_the_operands_and_cover_every_output():
    values = np.arange(8 * N, dtype=np.uint64).reshape(8, N)
    x, z = AShares(values, values + 1), AShares(values[0], values[1])
    product = Product("inner_product", x, x, z, axis=0)
    pieces = pipeline._pieces(product, 200)
    assert sum(p.z.left.size for p in pieces) == N
    assert all(2 * p.words <= 200 for p in pieces)
    assert all(np.shares_memory(p.x.left, x.left) for p in pieces)
    assert pipeline._pieces(product, 10**6) == [product]
