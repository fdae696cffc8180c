"""The report collector: events and Python objects in, three presorted per-helper batches out."""

import numpy as np
import pytest

from ipa.attribution.config import QueryConfig
from ipa.crypto.binding import Binding
from ipa.errors import InputError
from ipa.events import Events, read_csv, write_csv
from ipa.mpc.sharing import reconstruct
from ipa.reports.decode import decode_batch
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.user_agent import UserAgent

QUERY = Binding("shop.example", "collector.example", 9, "provider.example")
CONFIG = QueryConfig(num_breakdowns=4, cap=50)


def decoded(batches, registries):
    return [decode_batch(batches[h], registries[h], QUERY, CONFIG).rows for h in range(3)]


def test_reports_from_python_objects_are_presorted(network, registries):
    in_query_epoch = network.epochs.start(QUERY.epoch)
    agent = UserAgent.provisioned(network, "provider.example", 1234, clock=lambda: in_query_epoch)
    mk = agent.get_encrypted_match_key(
        QUERY.report_collector, QUERY.site, match_key_provider="provider.example"
    )
    collector = ReportCollector(network, QUERY, CONFIG)
    collector.add_trigger(mk, timestamp=50, trigger_value=30, constraint_id=2)
    collector.add_source(mk, timestamp=50, breakdown_key=3, constraint_id=2)  # same time: sources first
    collector.add_source(mk.to_bytes(), timestamp=10, breakdown_key=1)
    assert len(collector) == 3
    rows = decoded(collector.uploads(), registries)
    opened = {f: reconstruct([getattr(r, f) for r in rows]).tolist() for f in ("timestamp", "is_trigger")}
    assert opened == {"timestamp": [10, 50, 50], "is_trigger": [0, 0, 1]}
    assert reconstruct([r.breakdown_key for r in rows]).tolist() == [1, 3, 0]  # a trigger's is zero
    assert reconstruct([r.trigger_value for r in rows]).tolist() == [0, 0, 30]
    assert reconstruct([r.constraint_id for r in rows]).tolist() == [0, 2, 2]
    assert reconstruct([r.match_key for r in rows]).tolist() == [1234] * 3


def test_events_from_a_csv_file_with_simulated_user_agents(tmp_path, network, registries):
    events = Events.from_columns(
        timestamp=[5, 1, 3, 3],
        match_key=[7, 8, 7, 8],
        is_trigger=[1, 0, 0, 1],
        breakdown_key=[9, 2, 3, 9],
        trigger_value=[40, 99, 99, 20],
    )
    write_csv(events, tmp_path / "events.csv")
    events = read_csv(tmp_path / "events.csv")
    match_keys = simulate_user_agents(events, network, QUERY)
    assert (
        match_keys[0] is match_keys[2] and match_keys[1] is match_keys[3]
    )  # one user agent per user, cached
    collector = ReportCollector(network, QUERY, CONFIG)
    collector.add_source(match_keys[0], timestamp=0, breakdown_key=0)  # objects and events mix, in order
    collector.add_events(events, match_keys)
    rows = decoded(collector.uploads(chunk_rows=2), registries)
    assert reconstruct([r.timestamp for r in rows]).tolist() == [0, 1, 3, 3, 5]
    assert reconstruct([r.match_key for r in rows]).tolist() == [7, 8, 7, 8, 7]


def test_fields_are_checked_against_the_query_widths(network):
    mk = simulate_user_agents(
        Events.from_columns(
            timestamp=[0], match_key=[1], is_trigger=[0], breakdown_key=[0], trigger_value=[0]
        ),
        network,
        QUERY,
    )[0]
    collector = ReportCollector(network, QUERY, CONFIG)
    collector.add_source(mk, timestamp=2, breakdown_key=1)
    collector.add_source(mk, timestamp=1, breakdown_key=256)
    with pytest.raises(InputError, match="event 1: field breakdown_key does not fit in 8 bits"):
        collector.uploads()
    with pytest.raises(InputError, match="timestamp must be in"):
        collector.add_trigger(mk, timestamp=-1, trigger_value=1)


def test_bad_match_keys_and_arguments(network):
    collector = ReportCollector(network, QUERY, CONFIG)
    with pytest.raises(InputError, match="report 0: malformed encrypted match key"):
        collector.add_source(b"\x01\x01", timestamp=1, breakdown_key=1)
    with pytest.raises(InputError, match="must be an EncryptedMatchKey or bytes"):
        collector.add_source("text", timestamp=1, breakdown_key=1)
    events = Events.from_columns(
        timestamp=[1], match_key=[1], is_trigger=[0], breakdown_key=[0], trigger_value=[0]
    )
    with pytest.raises(InputError, match="one encrypted match key per event"):
        collector.add_events(events, [])
    with pytest.raises(InputError, match="needs a match-key provider"):
        simulate_user_agents(events, network, Binding("s", "r", 1))
    with pytest.raises(InputError, match="binding must be"):
        ReportCollector(network, "shop.example", CONFIG)
    assert len(collector) == 0


def test_empty_upload(network, registries):
    batches = ReportCollector(network, QUERY, CONFIG).uploads()
    assert all(len(r) == 0 for r in decoded(batches, registries))
    assert np.unique([len(b) for b in batches]).size == 1
