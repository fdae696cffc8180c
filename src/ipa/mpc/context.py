"""The context a protocol runs in: who we are, where we are, and how we talk.

Every protocol takes a :class:`Context` first. A protocol that has sub-steps
enters its declared tree (:mod:`ipa.mpc.step`) with ``ctx.enter(STEPS)`` and
narrows only to declared names: ``ctx.narrow("generate")``, or
``ctx.narrow("level", i)`` in a bounded family. Messages and PRSS draws are
keyed by the full step path (``sort/pass_3/move/shuffle/perm_12``), so a path
is never reused and two protocol runs with the same steps see the same
correlated randomness.

A runner's first context (``root``) is *open*: a protocol may enter any tree
there, and may send or draw, but narrowing needs a declared tree.

**Security mode.** ``verifier`` is None in semi-honest mode. In malicious mode
it is the party's :class:`~ipa.mpc.verifier.Verifier`, shared by every context
derived from the root: products are recorded there and verified at
checkpoints (``docs/malicious.md``). ``ctx.malicious`` says which mode runs.

**Workers.** ``collective`` is None (or of size 1) when this helper runs the
protocol in one process. Otherwise it is this worker's
:class:`~ipa.mpc.collective.Collective`: the context is worker k's, the
channel and PRSS are its triple's, and a *distributed* protocol
(``ctx.distributed``) holds only this worker's block of rows.
Exchanges among a helper's workers (:meth:`Context.all_to_all`) and draws all
of them must agree on (:meth:`Context.group_generator`) are keyed by the
*group step*: the step path without its root segment, because each triple's
root differs (``w<k>`` in a helper, ``root`` in the test world) while the
rest of its steps are the same in every triple.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ipa.errors import ProtocolError
from ipa.mpc.channel import Channel, Peer
from ipa.mpc.collective import Blocks, Collective
from ipa.mpc.prss import PRSS, KeyStream
from ipa.mpc.replicated import AShares
from ipa.mpc.step import Steps
from ipa.mpc.verifier import Verifier

__all__ = ["OPEN", "Context", "NoiseHook"]

OPEN = Steps("open")
"""The tree of a runner's first context: any protocol's tree may be entered there."""


@dataclass(frozen=True)
class Context:
    """One party's view of a running protocol at one step.

    ``steps`` is the tree declared at this step: :data:`OPEN` at a runner's
    root, the child tree a parent declared here, or ``None`` at a leaf.
    """

    party: int
    channel: Channel
    prss: PRSS
    step: str = "root"
    steps: Steps | None = OPEN
    verifier: Verifier | None = None
    collective: Collective | None = None

    @property
    def malicious(self) -> bool:
        """True in malicious mode (products recorded and verified at checkpoints)."""
        return self.verifier is not None

    @property
    def workers(self) -> int:
        """W, the workers this helper spreads the rows over (1: one process)."""
        return 1 if self.collective is None else self.collective.size

    @property
    def distributed(self) -> bool:
        """True if this context holds one worker's block of rows of W > 1 (``collective``)."""
        return self.workers > 1

    @property
    def group_step(self) -> str:
        """This step path without its root segment: the same at every worker of every triple."""
        return self.step.partition("/")[2]

    def group(self) -> Collective:
        """This worker's collective; a ProtocolError if the context has none."""
        if self.collective is None:
            raise ProtocolError(f"step {self.step!r} needs the helper's workers, and this context has none")
        return self.collective

    def all_to_all(self, name: str, parts: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        """Exchange ``parts[j]`` with worker j of this helper at ``<group step>:name``."""
        return self.group().all_to_all(f"{self.group_step}:{name}", parts)

    def all_gather(self, name: str, arrays: list[np.ndarray]) -> list[list[np.ndarray]]:
        """Every worker's ``arrays`` of this helper, by worker, at ``<group step>:name``."""
        return self.group().all_gather(f"{self.group_step}:{name}", arrays)

    def gather_blocks(self, rows: int) -> Blocks:
        """Where the rows of this helper's workers lie, this worker holding ``rows`` of them (one
        all-gather of the sizes at ``<group step>:sizes``)."""
        return Blocks.gather(self.group(), f"{self.group_step}:sizes", rows)

    def group_draw(self, peer: Peer, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """PRSS words drawn alike by every worker of this helper and of ``peer`` (the group
        PRSS), keyed by the group step."""
        return self.group().prss.draw(self.group_step, peer, shape, dtype)

    def group_generator(self, peer: Peer) -> np.random.Generator:
        """A random generator drawn alike by every worker of this helper and of ``peer`` (the
        group PRSS), keyed by the group step (:meth:`~ipa.mpc.prss.PRSS.generator`)."""
        return self.group().prss.generator(self.group_step, peer)

    def enter(self, steps: Steps) -> Context:
        """This context with ``steps`` as its declared tree (a protocol's first line).

        Allowed at an open step or where the parent declared exactly ``steps``;
        anything else is a ProtocolError naming both trees.
        """
        if self.steps is steps:
            return self
        if self.steps is OPEN:
            return replace(self, steps=steps)
        here = "a leaf" if self.steps is None else f"declared for {self.steps.name}"
        raise ProtocolError(f"{steps.name} entered at step {self.step!r}, which is {here}")

    def narrow(self, name: str, index: int | None = None) -> Context:
        """The context of declared sub-step ``name`` (``name_index`` in a family)."""
        if self.steps is None or self.steps is OPEN:
            where = "a leaf" if self.steps is None else "open: enter a declared tree first"
            raise ProtocolError(f"cannot narrow to {name!r}: step {self.step!r} is {where}")
        segment, child = self.steps.child(self.step, name, index)
        return replace(self, step=f"{self.step}/{segment}", steps=child)

    def send(self, to: Peer, *arrays: np.ndarray) -> None:
        """Send arrays to a neighbour under this step."""
        self.channel.send(self.step, to, arrays)

    def receive(self, frm: Peer, *like: np.ndarray) -> list[np.ndarray]:
        """Receive arrays shaped like ``like`` from a neighbour under this step."""
        return self.channel.receive(self.step, frm, like)

    def draw(self, peer: Peer, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """PRSS words shared with ``peer`` under this step."""
        return self.prss.draw(self.step, peer, shape, dtype)

    def permutation(self, peer: Peer, n: int) -> np.ndarray:
        """A random permutation of ``range(n)`` shared with ``peer`` under this step."""
        return self.prss.permutation(self.step, peer, n)

    def generator(self, peer: Peer) -> np.random.Generator:
        """A random generator shared with ``peer`` under this step (:meth:`~ipa.mpc.prss.PRSS.generator`)."""
        return self.prss.generator(self.step, peer)

    def stream(self, peer: Peer) -> KeyStream:
        """The PRSS key stream shared with ``peer`` under this step, read in any order (its one draw)."""
        return self.prss.stream(self.step, peer)


NoiseHook = Callable[[Context, AShares], AShares]
"""A protocol run on the B result shares before release that returns the noised shares.

Declared here, below both sides: :func:`ipa.attribution.pipeline.run_query`
calls one, :mod:`ipa.dp.release` makes them.
"""
