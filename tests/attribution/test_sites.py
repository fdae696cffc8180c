"""Cross-site queries: the MPC (with its oblivious neutralisation) against ``ipa.reference``, rule 0."""

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from three_party import mpc_query

from ipa.attribution.config import QueryConfig, QueryType
from ipa.attribution.rows import share_events
from ipa.attribution.sites import neutralise
from ipa.errors import InputError
from ipa.events import Events
from ipa.mpc.sharing import reconstruct
from ipa.mpc.testing import run
from ipa.reference import attribute_query, neutralised

QUERYING = "news.example"
OTHERS = ("shop.example", "travel.example", "sport.example")
CONFIG = {"match_key_bits": 8, "timestamp_bits": 10, "breakdown_bits": 3, "value_bits": 8}
NAMES = ("timestamp", "match_key", "is_trigger", "breakdown_key", "trigger_value", "constraint_id", "site")


@st.composite
def cross_site_queries(draw, max_rows: int = 40) -> tuple[Events, QueryConfig]:
    """Events of a few users on a few sites, some users on one site only, reports on either side.

    Every user has a home site, and most of their events happen there; the
    rest on any site (so some users are on one site only). Timestamps cluster
    so ties are common, and cross the boundary of a 64-unit epoch.
    """
    query_type = draw(st.sampled_from(list(QueryType)))
    config = QueryConfig(
        num_breakdowns=draw(st.integers(1, 8)),
        cap=draw(st.sampled_from([0, 1, 50, 255, 1000])),
        window=draw(st.sampled_from([None, 0, 3, 40])),
        max_events_per_user=draw(st.sampled_from([2, 4, 64])),
        query_type=query_type,
        **CONFIG,
    )
    sites = ("", QUERYING, *OTHERS)
    users = draw(st.lists(st.integers(0, 255), min_size=1, max_size=4, unique=True))
    homes = {u: draw(st.sampled_from(sites)) for u in users}
    n = draw(st.integers(0, max_rows))
    rows = []
    for _ in range(n):
        user = draw(st.sampled_from(users))
        site = draw(st.one_of(st.just(homes[user]), st.sampled_from(sites)))
        rows.append(
            (
                draw(st.sampled_from([60, 62, 63, 64, 65, 70])),  # an epoch boundary at 64
                user,
                draw(st.booleans()),
                draw(st.integers(0, 7)),
                draw(st.sampled_from([0, 1, 20, 255])),
                draw(st.integers(0, 1)),
                site,
            )
        )
    columns = list(zip(*rows, strict=True)) if rows else [[]] * 7
    ev = Events.from_columns(**dict(zip(NAMES, columns, strict=True)))
    return ev, config


@settings(max_examples=60, deadline=None)
@given(cross_site_queries())
def test_mpc_equals_the_reference_across_sites(query):
    ev, config = query
    got, _ = mpc_query(ev, config, site=QUERYING)
    expected = attribute_query(ev, config, QUERYING)
    assert got.tolist() == expected.tolist()
    smuggled = neutralised(ev, QUERYING, config.query_type)
    event(f"{config.query_type} fanout, {'some' if smuggled.any() else 'no'} smuggled reports")
    if smuggled.any() and config.max_events_per_user == 64:
        # Dropping the smuggled reports changes at most the K look-back; without K binding, the
        # answer equals the one without them: they never contribute.
        assert attribute_query(ev.take(~smuggled), config, QUERYING).tolist() == expected.tolist()


@pytest.mark.parametrize("query_type", list(QueryType))
def test_a_smuggled_report_never_counts(query_type):
    """News.example's source-fanout: a shop.example impression slipped in is never attributed to."""
    source_fanout = query_type is QueryType.SOURCE
    # user 5: an impression on news (key 1), one on another publisher (key 2), a purchase on shop.
    smuggled = (20, 5, 0, 2, 0, 0, "sport.example") if source_fanout else (30, 5, 1, 0, 40, 0, "shop.example")
    rows = [
        (10, 5, 0, 1, 0, 0, QUERYING if source_fanout else "sport.example"),
        smuggled,
        (40, 5, 1, 0, 70, 0, "shop.example" if source_fanout else QUERYING),
    ]
    ev = Events.from_columns(**dict(zip(NAMES, zip(*rows, strict=True), strict=True)))
    config = QueryConfig(num_breakdowns=4, cap=100, query_type=query_type)
    expected = [0, 70, 0, 0]
    assert attribute_query(ev, config, QUERYING).tolist() == expected
    got, _ = mpc_query(ev, config, site=QUERYING)
    assert got.tolist() == expected
    # Without the rule (every report taken as the querying site's) the smuggled one counts.
    unsited = Events.from_columns(**{n: getattr(ev, n) for n in NAMES[:-1]})
    assert attribute_query(unsited, config).tolist() == ([0, 0, 70, 0] if source_fanout else [0, 100, 0, 0])


def test_neutralise_reveals_nothing_and_sends_only_for_off_site_sources():
    ev = Events.from_columns(
        timestamp=[1, 2, 3, 4],
        match_key=[1, 1, 2, 2],
        is_trigger=[0, 1, 0, 1],
        breakdown_key=[1, 0, 2, 0],
        trigger_value=[0, 9, 0, 7],
        site=[QUERYING, "shop.example", "shop.example", QUERYING],
    )
    config = QueryConfig(num_breakdowns=4, cap=100)
    shares = share_events(ev, config, QUERYING)
    result = run(lambda ctx, rows: neutralise(ctx, rows, QueryType.SOURCE), shares)
    rows = result.outputs
    assert reconstruct([r.is_trigger for r in rows]).tolist() == [0, 1, 1, 1]
    assert reconstruct([r.trigger_value for r in rows]).tolist() == [0, 9, 0, 7]
    assert result.rounds == 1
    assert result.bytes_sent() == [2 * 2, 2 * 2, 2 * 2]  # two off-site rows, one 16-bit word each
    result = run(lambda ctx, rows: neutralise(ctx, rows, QueryType.TRIGGER), shares)
    assert reconstruct([r.trigger_value for r in result.outputs]).tolist() == [0, 0, 0, 7]
    assert result.bytes_sent() == [0, 0, 0]


def test_events_that_name_sites_need_a_querying_site():
    ev = Events.from_columns(
        timestamp=[1], match_key=[1], is_trigger=[0], breakdown_key=[1], trigger_value=[0], site=["a.example"]
    )
    config = QueryConfig(num_breakdowns=2, cap=1)
    with pytest.raises(InputError, match="give the querying site"):
        attribute_query(ev, config)
    with pytest.raises(InputError, match="give the querying site"):
        share_events(ev, config)


def test_rows_without_a_site_belong_to_the_querying_site():
    ev = Events.from_columns(
        timestamp=[1, 2], match_key=[3, 3], is_trigger=[0, 1], breakdown_key=[1, 0], trigger_value=[0, 5]
    )
    for query_type in QueryType:
        config = QueryConfig(num_breakdowns=2, cap=10, query_type=query_type)
        assert attribute_query(ev, config, "any.example").tolist() == [0, 5]
        assert mpc_query(ev, config, site="any.example")[0].tolist() == [0, 5]
        assert not np.any(neutralised(ev, "any.example", query_type))
