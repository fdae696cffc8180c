"""Secret-sharing values that one party alone knows.

Owner o sets component o to a PRSS word r it shares with its previous
neighbour, component o+1 to ``v − r`` (sent to its next neighbour, which
holds that component), and component o+2 to zero. The next neighbour sees
``v − r`` with r unknown to it; the previous one sees only r.

``input_from``: one owner shares its values; 1 round, the owner sends 1 word
per element to its next neighbour. ``input_from_each``: all three parties
share a value of their own at once and get the three sharings back; 1 round,
each party sends 1 word per element to its next neighbour.
"""

from __future__ import annotations

import numpy as np

from ipa.mpc.channel import Peer
from ipa.mpc.context import Context
from ipa.mpc.replicated import AShares

__all__ = ["input_from", "input_from_each"]


def input_from(ctx: Context, owner: int, values: np.ndarray) -> AShares:
    """Shares of party ``owner``'s ``values``; the others pass any array of the same shape and ring."""
    values = np.asarray(values)
    zero = np.broadcast_to(np.zeros((), values.dtype), values.shape)  # a read-only view, not a column
    if ctx.party == owner:
        r = ctx.draw(Peer.PREV, values.shape, values.dtype)  # component `owner`
        masked = values - r  # component owner+1
        ctx.send(Peer.NEXT, masked)
        return AShares(r, masked)
    if ctx.party == Peer.NEXT.of(owner):
        (masked,) = ctx.receive(Peer.PREV, values)
        return AShares(masked, zero)
    return AShares(zero, ctx.draw(Peer.NEXT, values.shape, values.dtype))


def input_from_each(ctx: Context, values: np.ndarray) -> list[AShares]:
    """Shares of every party's own ``values`` (same shape and ring everywhere), by owner.

    Cost: ``1`` round, ``1`` word per element.
    """
    values = np.asarray(values)
    zero = np.zeros_like(values)
    r_mine = ctx.draw(Peer.PREV, values.shape, values.dtype)  # component ctx.party of my input
    r_next = ctx.draw(Peer.NEXT, values.shape, values.dtype)  # component o of the next party's input
    masked = values - r_mine
    ctx.send(Peer.NEXT, masked)
    (from_prev,) = ctx.receive(Peer.PREV, masked)  # component (o+1) of the previous party's input
    me, nxt, prv = ctx.party, (ctx.party + 1) % 3, (ctx.party - 1) % 3
    shares = {
        me: AShares(r_mine, masked),  # I hold components (me, me+1) of my own input
        prv: AShares(from_prev, zero),  # of prev's input I hold its components o+1 and o+2
        nxt: AShares(zero, r_next),  # of next's input I hold its components o+2 and o
    }
    return [shares[o] for o in range(3)]
