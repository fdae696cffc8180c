"""Declared steps: each protocol names, once, the sub-steps it may narrow to.

A protocol module declares its step tree next to its code::

    STEPS = Steps("add", "generate", carry=CARRIES_STEPS)   # leaves, then named children
    CARRIES_STEPS = Steps("carries", up=Family(6), down=Family(5))   # up_0 … up_5, down_0 … down_4

and its function enters it first, then narrows only to declared names::

    def add(ctx, a, b):
        ctx = ctx.enter(STEPS)
        g = and_(ctx.narrow("generate"), a, b)
        c = carries(ctx.narrow("carry"), g, a ^ b)   # a child protocol's tree

- a *leaf* (a positional name) is a step where messages are sent or PRSS
  words drawn, by this protocol or by a one-step protocol (``multiply``,
  ``and_``, ``reveal``, ``input_from``) that never narrows;
- a *child* (``name=OTHER_STEPS``) is where another protocol runs; that
  protocol enters ``OTHER_STEPS`` there, and entering any other tree is an error;
- a *family* (``name=Family(count)`` or ``Family(count, child)``) is a bounded
  loop: ``ctx.narrow("level", i)`` gives the step ``level_i`` for 0 ≤ i < count.

Narrowing to an undeclared name, past a family's bound, or below a leaf, is a
:class:`~ipa.errors.ProtocolError` at once, naming the step and what was
declared there. The paths messages and PRSS draws are keyed by are unchanged
(``sort/pass_3/move/shuffle/perm_12``). :func:`render` prints the declared
trees reachable from a root, one line per step, which ``tests/golden/steps.txt``
keeps under review.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ipa.errors import ProtocolError

__all__ = ["Family", "Steps", "render"]

_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Family:
    """``count`` steps ``name_0`` … ``name_{count-1}``; each is a leaf, or runs ``child``."""

    count: int
    child: Steps | None = None

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"a step family needs at least one member, got count={self.count}")


class Steps:
    """The declared sub-steps of one protocol (or of one part of it), named ``name``.

    Positional ``leaves`` are steps without sub-steps; keyword ``children`` map a
    step name to the tree that runs there (``Steps``) or to a bounded
    :class:`Family`. A trailing underscore is dropped from keyword names, so
    ``pass_=Family(64)`` declares ``pass_0`` … ``pass_63``.
    """

    def __init__(self, name: str, *leaves: str, **children: Steps | Family) -> None:
        self.name = name
        self.leaves = frozenset(leaves)
        self.children: dict[str, Steps] = {}
        self.families: dict[str, Family] = {}
        for key, child in children.items():
            key = key.removesuffix("_")
            if isinstance(child, Family):
                self.families[key] = child
            else:
                self.children[key] = child
        declared = [*leaves, *self.children, *self.families]
        for step in declared:
            if not _NAME.fullmatch(step):
                raise ValueError(f"step name must be a lower-case identifier, got {step!r}")
        if len(set(declared)) != len(declared):
            raise ValueError(f"step names of {name!r} must be distinct: {sorted(declared)}")

    def __repr__(self) -> str:
        return f"Steps({self.name!r})"

    def child(self, path: str, name: str, index: int | None) -> tuple[str, Steps | None]:
        """The path segment of sub-step ``name`` (``name_index`` in a family) and its tree.

        Raises ProtocolError if ``name`` (with ``index``) is not declared here.
        """
        if index is None and (name in self.leaves or name in self.children):
            return name, self.children.get(name)
        family = self.families.get(name)
        if family is not None and index is not None and 0 <= index < family.count:
            return f"{name}_{index}", family.child
        if family is not None:
            raise ProtocolError(
                f"step {name!r} under {path!r} is a family of {family.count}: "
                f"narrow({name!r}, i) with 0 <= i < {family.count}, got index {index!r}"
            )
        raise ProtocolError(
            f"step {name!r} is not declared under {path!r} ({self.name}); declared: {self._listing()}"
        )

    def _listing(self) -> str:
        names = [*sorted(self.leaves), *sorted(self.children)]
        names += [f"{n}_{{0..{f.count - 1}}}" for n, f in sorted(self.families.items())]
        return ", ".join(names) or "nothing"


def render(*roots: Steps) -> str:
    """The declared trees reachable from ``roots``: one block per tree, one line per step.

    A child tree is printed once, under its own name, and referred to by
    ``-> name`` elsewhere. Two different trees with one name are an error.
    """
    seen: dict[str, Steps] = {}
    order: list[Steps] = []
    todo = list(roots)
    while todo:
        steps = todo.pop(0)
        if steps.name in seen:
            if seen[steps.name] is not steps:
                raise ValueError(f"two different step trees are named {steps.name!r}")
            continue
        seen[steps.name] = steps
        order.append(steps)
        todo += [*steps.children.values(), *(f.child for f in steps.families.values() if f.child)]
    return "".join(_block(steps) for steps in order)


def _block(steps: Steps) -> str:
    lines = {leaf: leaf for leaf in steps.leaves}
    lines |= {name: f"{name} -> {child.name}" for name, child in steps.children.items()}
    for name, family in steps.families.items():
        target = f" -> {family.child.name}" if family.child else ""
        lines[name] = f"{name}_{{0..{family.count - 1}}}{target}"
    return "\n".join([steps.name, *(f"  {lines[name]}" for name in sorted(lines))]) + "\n\n"
