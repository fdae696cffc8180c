"""Declared steps: an undeclared step, a family member past its bound, or a wrong tree fails at once."""

import numpy as np
import pytest

from ipa.errors import ProtocolError
from ipa.mpc.adder import ADD_STEPS, add
from ipa.mpc.channel import Peer
from ipa.mpc.memory import run_three
from ipa.mpc.sharing import share_boolean
from ipa.mpc.step import Family, Steps, render

CHILD = Steps("test.child", "x")
TREE = Steps("test", "leaf", child=CHILD, level=Family(2), pass_=Family(2, CHILD))


def on_every_party(body):
    """Run ``body(ctx)`` on the three parties, each from the open root context."""
    return run_three(lambda ctx, _: body(ctx), [None] * 3)


def test_declared_steps_give_the_same_paths_as_before():
    def walk(ctx):
        ctx = ctx.enter(TREE)
        return [
            ctx.narrow("leaf").step,
            ctx.narrow("child").narrow("x").step,
            ctx.narrow("level", 1).step,
            ctx.narrow("pass", 0).narrow("x").step,
        ]

    assert on_every_party(walk).outputs[0] == ["root/leaf", "root/child/x", "root/level_1", "root/pass_0/x"]


@pytest.mark.parametrize(
    ("narrow", "message"),
    [
        (lambda ctx: ctx.narrow("perm01"), r"'perm01' is not declared under 'root' \(test\); declared: leaf"),
        (
            lambda ctx: ctx.narrow("level", 2),
            r"family of 2: narrow\('level', i\) with 0 <= i < 2, got index 2",
        ),
        (lambda ctx: ctx.narrow("level"), "family of 2"),
        (lambda ctx: ctx.narrow("level_0"), "'level_0' is not declared"),
        (lambda ctx: ctx.narrow("leaf", 0), "'leaf' is not declared"),
        (lambda ctx: ctx.narrow("leaf").narrow("x"), "step 'root/leaf' is a leaf"),
        (
            lambda ctx: ctx.narrow("child").narrow("y"),
            r"'y' is not declared under 'root/child' \(test.child\)",
        ),
    ],
)
def test_an_undeclared_step_is_an_error_where_it_is_used(narrow, message):
    with pytest.raises(ProtocolError, match=message):
        on_every_party(lambda ctx: narrow(ctx.enter(TREE)))


def test_narrowing_needs_a_declared_tree():
    with pytest.raises(ProtocolError, match="step 'root' is open: enter a declared tree first"):
        on_every_party(lambda ctx: ctx.narrow("anything"))


def test_a_protocol_runs_only_where_its_tree_is_declared():
    a = share_boolean(np.arange(4, dtype=np.uint8), 8)

    def add_at(name):
        def body(ctx):
            return add(ctx.enter(TREE).narrow(name), a[ctx.party], a[ctx.party])

        return body

    with pytest.raises(ProtocolError, match="add entered at step 'root/leaf', which is a leaf"):
        on_every_party(add_at("leaf"))
    with pytest.raises(
        ProtocolError, match=r"add entered at step 'root/child', which is declared for test\.child"
    ):
        on_every_party(add_at("child"))
    declared = Steps("test.adds", here=ADD_STEPS)
    on_every_party(lambda ctx: add(ctx.enter(declared).narrow("here"), a[ctx.party], a[ctx.party]))


def test_sending_at_a_declared_step():
    def ring(ctx):
        step = ctx.enter(TREE).narrow("level", 0)
        step.send(Peer.NEXT, np.zeros(2, np.uint64))
        return step.receive(Peer.PREV, np.zeros(2, np.uint64))[0].tolist()

    result = on_every_party(ring)
    assert result.outputs == [[0, 0]] * 3
    assert result.stats[0].bytes_sent == {"root/level_0": 16}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Steps("t", "Not/ok"), "lower-case identifier"),
        (lambda: Steps("t", "a", a=CHILD), "distinct"),
        (lambda: Family(0), "at least one"),
    ],
)
def test_declarations_are_checked(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_render_prints_each_tree_once_with_references():
    assert render(TREE) == (
        "test\n  child -> test.child\n  leaf\n  level_{0..1}\n  pass_{0..1} -> test.child\n\n"
        "test.child\n  x\n\n"
    )
    with pytest.raises(ValueError, match=r"two different step trees are named 'test\.child'"):
        render(Steps("top", a=CHILD, b=Steps("test.child")))
