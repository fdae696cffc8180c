"""The soundness budget of a run (``ipa.mpc.verifier``): every batch its checkpoints verify shares 2^-40."""

import math

import numpy as np
import pytest

from ipa.errors import ProtocolError
from ipa.mpc.buckets import log2_bound, parameters
from ipa.mpc.checkpoint import CHECKPOINT_STEPS, checkpoint
from ipa.mpc.mac import MAC_LOG2_BOUND
from ipa.mpc.multiply import and_, multiply
from ipa.mpc.sharing import reconstruct, share_arithmetic, share_boolean
from ipa.mpc.sort import sort
from ipa.mpc.step import Family, Steps
from ipa.mpc.testing import run
from ipa.mpc.verifier import Verifier

RNG = np.random.default_rng(19)


def test_a_fresh_budget_gives_its_first_batch_half():
    assert Verifier().next_bits() == 41
    assert Verifier(security_bits=60).next_bits() == 61


@pytest.mark.parametrize("seed", [0, 1])
def test_any_number_of_batches_of_any_size_stays_within_the_budget(seed):
    """Batch i asks for at most 40 + log2((i+1)(i+2)) bits, and the total never passes 2^-40."""
    rng = np.random.default_rng(seed)
    verifier = Verifier()
    for i, units in enumerate(rng.choice([0, 1, 300, 5_000, 20_000], 400)):
        bits = verifier.next_bits()
        assert 40 < bits <= 40 + math.log2((i + 1) * (i + 2)) + 1 / 8
        plan = verifier.plan(int(units))
        assert plan == parameters(int(units), bits)
        assert verifier.bounds[-1] == log2_bound(plan.buckets, plan.size, plan.opened) <= -bits
        assert verifier.log2_soundness < -40
    assert len(verifier.bounds) == 400


def test_what_a_batch_leaves_unspent_goes_to_the_next():
    verifier = Verifier()
    verifier.plan(100_000)  # B = 4 is sound to about 2^-53, far below its allowance of 2^-41
    assert verifier.bounds[0] < -50
    assert verifier.next_bits() == 40.625  # about 2/3 of the budget (−log2(2/3) = 0.58), not 1/6


def test_a_budget_no_plan_reaches_is_a_clear_error():
    verifier = Verifier(security_bits=400)
    with pytest.raises(ProtocolError, match=r"soundness budget exhausted.*2\^-400"):
        verifier.plan(10)
    assert verifier.bounds == []


def test_spending_past_the_budget_is_refused():
    verifier = Verifier()
    verifier.spend(-40.5)
    with pytest.raises(ProtocolError, match="soundness budget exhausted"):
        verifier.spend(-40.5)
    assert verifier.bounds == [-40.5]
    assert verifier.log2_soundness == -40.5


def _bounds(result):
    """Each party's batch bounds; every party planned the same batches."""
    bounds = [out[1] for out in result.outputs]
    assert bounds[0] == bounds[1] == bounds[2]
    return bounds[0]


def test_a_standalone_sort_is_sound_to_2_to_the_minus_40_in_total():
    n, width = 300, 40
    keys = RNG.integers(0, 2**width, n, dtype=np.uint64)
    payload = share_boolean(np.arange(n, dtype=np.uint64), 16)

    def protocol(ctx, key, column):
        (moved,) = sort(ctx, key, [column])
        return moved, list(ctx.verifier.bounds), ctx.verifier.log2_soundness

    result = run(protocol, share_boolean(keys, width), payload, security="malicious")
    bounds = _bounds(result)
    assert bounds == [MAC_LOG2_BOUND] * math.ceil(width / 3)  # each pass checks its products' MACs once
    assert result.outputs[0][2] <= -40
    got = reconstruct([out[0] for out in result.outputs])
    assert got.tolist() == np.argsort(keys, kind="stable").tolist()


MANY = Steps("many", round=Family(64, Steps("many.round", "mul", "and", check=CHECKPOINT_STEPS)))


def test_many_checkpoints_in_a_row_stay_within_the_budget():
    """64 checkpoints of two batches each (ring and boolean): 128 batches, 2^-40 in all."""
    x = share_arithmetic(RNG.integers(0, 2**64, 1000, dtype=np.uint64))
    b = share_boolean(RNG.integers(0, 2**8, 1000, dtype=np.uint64), 8)

    def protocol(ctx, x, b):
        ctx = ctx.enter(MANY)
        for i in range(64):
            step = ctx.narrow("round", i)
            x = multiply(step.narrow("mul"), x, x)
            b = and_(step.narrow("and"), b, b)
            checkpoint(step.narrow("check"))
        return x, list(ctx.verifier.bounds), ctx.verifier.log2_soundness

    result = run(protocol, x, b, security="malicious")
    assert len(_bounds(result)) == 128
    assert result.outputs[0][2] <= -40
