"""Cross-site queries: neutralise, obliviously, a report on the querying side made on another site.

A query is made for one querying site Q and is a source-fanout or a
trigger-fanout query (:class:`~ipa.attribution.config.QueryType`). Every
report is bound to the site where its event happened (its match key is
sealed with that site in HPKE ``info``), and each helper checks that binding
itself when it opens its part; so the helpers know, for every row, whether
it was made on Q: the public ``off_site`` mask of :class:`SharedRows`. They
do **not** know which rows are sources and which triggers (``is_trigger``
stays secret), so they cannot drop a source made off Q themselves; instead
every row goes through the rule of ``ipa.reference`` (rule 0):

- **source-fanout**, on off-site rows only: ``value ← value & is_trigger``
  (the original bit, expanded over the value's width: one AND), then
  ``is_trigger ← 1`` (public, local). A source made off Q becomes a trigger
  of value 0; a trigger made off Q keeps its value.
- **trigger-fanout**: ``value ← value & ~off_site`` (a public mask, local).
  A trigger made off Q keeps its place but adds nothing; a source made off Q
  is a source, as the query type allows, and its value is never read.

The neutralised row keeps its place in the presorted order, so the MPC and
the reference agree exactly (the collector presorts with the original
``is_trigger``).

What helpers learn: the site of every report (they need it to open the
report, and the proposal's helpers know it too) and hence ``off_site``; not
which reports are sources. For a source-fanout query an honest collector's
off-site reports are all triggers, so the helpers could guess their role;
for reports made on Q, which may be Q's own sources or triggers, they learn
nothing. What the rule guarantees: a report made off Q never acts on Q's
side of the query (never receives attribution in a source-fanout query,
never adds value in a trigger-fanout one), whatever ``is_trigger`` the
collector gave it. The collector chooses the role of every report it
submits, so it may still submit an off-site report as one of the other side.

Cost: source-fanout, 1 round and one word of the value's width (2 bytes
for 16-bit values) per off-site row per helper; trigger-fanout, and any
query without off-site rows, nothing. Parties learn nothing.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ipa.attribution.config import QueryType
from ipa.attribution.rows import SharedRows
from ipa.mpc.context import Context
from ipa.mpc.multiply import and_
from ipa.mpc.replicated import public_bits
from ipa.mpc.ring import mask
from ipa.mpc.step import Steps

__all__ = ["NEUTRALISE_STEPS", "neutralise"]

NEUTRALISE_STEPS = Steps("neutralise", "value")


def neutralise(ctx: Context, rows: SharedRows, query_type: QueryType) -> SharedRows:
    """``rows`` with every off-site row on the querying side turned into a trigger of value 0.

    Rows whose ``off_site`` is false are unchanged; with no off-site row
    nothing is sent (every helper holds the same public mask).
    """
    ctx = ctx.enter(NEUTRALISE_STEPS)
    off_site, value = rows.off_site, rows.trigger_value
    if not off_site.any():
        return rows
    if QueryType.parse(query_type) is QueryType.TRIGGER:
        keep = np.where(off_site, 0, mask(value.width, value.dtype)).astype(value.dtype)
        return dataclasses.replace(rows, trigger_value=value.mask(keep))
    away = np.flatnonzero(off_site)
    was_trigger = rows.is_trigger[away].expand(value.width)
    kept = and_(ctx.narrow("value"), value[away], was_trigger)
    is_trigger = rows.is_trigger.map(np.copy)
    one = public_bits(ctx.party, np.ones(len(away), dtype=np.uint8), 1)
    is_trigger.left[away], is_trigger.right[away] = one.left, one.right
    value = value.map(np.copy)
    value.left[away], value.right[away] = kept.left, kept.right
    return dataclasses.replace(rows, is_trigger=is_trigger, trigger_value=value)
