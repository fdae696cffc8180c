"""The context a protocol runs in: who we are, where we are, and how we talk.

Every protocol takes a :class:`Context` first. ``ctx.narrow("name")`` gives the
context of a sub-step; messages and PRSS draws are keyed by the full step path
(``sort/pass_3/shuffle/perm_12``), so a path is never reused and two protocol
runs with the same steps see the same correlated randomness.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ipa.mpc.channel import Channel, Peer
from ipa.mpc.prss import PRSS
from ipa.mpc.replicated import AShares

__all__ = ["Context", "NoiseHook"]

_STEP_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Context:
    """One party's view of a running protocol at one step."""

    party: int
    channel: Channel
    prss: PRSS
    step: str = "root"

    def narrow(self, name: str) -> Context:
        """The context of sub-step ``name`` (lower-case identifier)."""
        if not _STEP_NAME.fullmatch(name):
            raise ValueError(f"step name must be a lower-case identifier, got {name!r}")
        return Context(self.party, self.channel, self.prss, f"{self.step}/{name}")

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


NoiseHook = Callable[[Context, AShares], AShares]
"""A protocol run on the B result shares before release that returns the noised shares.

Declared here, below both sides: :func:`ipa.attribution.pipeline.run_query`
calls one, :mod:`ipa.dp.release` makes them.
"""
