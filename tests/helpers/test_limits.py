"""A helper's limits: what admission and an upload's header refuse, the config that sets them."""

import threading

import numpy as np
import pytest

from ipa.attribution.config import QueryConfig
from ipa.crypto.binding import Binding
from ipa.crypto.keys import KeyRegistry
from ipa.errors import ConfigError, InvalidReportError
from ipa.reports.batch import encode_batch
from ipa.reports.decode import batch_head_length, batch_size
from ipa.reports.layout import BATCH_HEADER, FIELD_RECORD
from ipa.reports.match_key import encrypt_match_key
from ipa_helper.config import HelperConfig, load_config
from ipa_helper.limits import (
    MEASURED_PEAK_MIB,
    LimitError,
    check_query,
    check_upload,
    largest_max_breakdowns,
    working_memory,
)
from ipa_helper.timers import Deadlines
from ipa_rpc import MAX_MESSAGE_BYTES

DEFAULTS = HelperConfig.__dataclass_fields__


def default(name: str) -> int:
    return DEFAULTS[name].default


@pytest.mark.parametrize("breakdowns, bits", [(1 << 20, 20), (1 << 31, 31)])
def test_default_limits_refuse_results_that_cannot_be_returned(breakdowns, bits):
    # Both were admitted and charged; every GetResults then failed on the message limit.
    config = QueryConfig(num_breakdowns=breakdowns, cap=1, breakdown_bits=bits, timestamp_bits=20)
    assert 16 * breakdowns > MAX_MESSAGE_BYTES
    with pytest.raises(LimitError, match=rf"num_breakdowns {breakdowns} exceeds .* max_breakdowns \(65536\)"):
        check_query(config, 0, default("max_breakdowns"), default("max_queries"))


def test_the_largest_admitted_result_fits_one_message():
    check_query(QueryConfig(num_breakdowns=1 << 16, cap=1, breakdown_bits=16), 0, 1 << 16, 8)
    assert 16 * largest_max_breakdowns() < MAX_MESSAGE_BYTES <= 16 * (largest_max_breakdowns() + 512)


def test_a_full_helper_refuses_new_queries_naming_max_queries():
    config = QueryConfig(num_breakdowns=4, cap=1)
    check_query(config, 7, 1 << 16, 8)
    with pytest.raises(LimitError, match=r"holds 8 queries that have not ended, its max_queries"):
        check_query(config, 8, 1 << 16, 8)


def test_an_upload_header_over_a_limit_is_refused_naming_it():
    config = QueryConfig(num_breakdowns=4, cap=1)
    check_upload(config, 1000, 10_000, 1000, 10_000, working_memory(config, 1000))
    with pytest.raises(LimitError, match=r"1001 reports, more than this helper's max_rows \(1000\)"):
        check_upload(config, 1001, 10_000, 1000, 10_000, 1 << 40)
    with pytest.raises(LimitError, match=r"10001 bytes, more than this helper's max_upload_bytes \(10000\)"):
        check_upload(config, 10, 10_001, 1000, 10_000, 1 << 40)
    with pytest.raises(LimitError, match=r"more than this helper's max_query_memory_bytes \(1000\)"):
        check_upload(config, 10, 100, 1000, 10_000, 1000)


def test_working_memory_grows_with_rows_and_with_the_breakdown_key_width():
    narrow = QueryConfig(num_breakdowns=16, cap=1, breakdown_bits=8)
    wide = QueryConfig(num_breakdowns=16, cap=1, breakdown_bits=20)
    assert working_memory(narrow, 2000) - working_memory(narrow, 1000) == working_memory(narrow, 1000) - 256
    assert working_memory(wide, 1000) > 20 * working_memory(narrow, 1000)


def test_working_memory_follows_the_measured_peak_per_helper():
    """bench/e2e.py at 10^6 reports, 8-bit keys: each helper process peaked within MEASURED_PEAK_MIB."""
    least, most = (mib * 2**20 for mib in MEASURED_PEAK_MIB)
    assert least <= working_memory(QueryConfig(num_breakdowns=16, cap=1, breakdown_bits=8), 10**6) <= most


def write_config(tmp_path, **limits):
    lines = "".join(f"{k} = {v}\n" for k, v in limits.items())
    path = tmp_path / "h1.toml"
    path.write_text(
        '[helper]\nindex = 1\nlisten = "a:1"\npeer_listen = "a:2"\ndata_dir = "d"\n'
        + lines
        + '[hpke]\nkeys = "k"\n[[peers]]\nindex = 2\naddress = "b"\n[[peers]]\nindex = 3\naddress = "c"\n'
    )
    return path


def test_config_defaults_and_overrides(tmp_path):
    config = load_config(write_config(tmp_path))
    assert (config.max_rows, config.max_breakdowns, config.max_queries) == (1 << 24, 1 << 16, 8)
    assert config.max_query_memory_bytes == 32 << 30 and config.max_upload_bytes == 2 << 30
    config = load_config(write_config(tmp_path, max_rows=10, max_queries=2, max_breakdowns=100))
    assert (config.max_rows, config.max_queries, config.max_breakdowns) == (10, 2, 100)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("max_queries", 0, "max_queries must be a positive integer"),
        ("max_rows", -5, "max_rows must be a positive integer"),
        ("max_breakdowns", 1 << 20, "max_breakdowns must be at most 524032"),
        ("max_query_memory_bytes", '"lots"', "max_query_memory_bytes must be a int"),
    ],
)
def test_config_refuses_limits_that_cannot_work(tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, **{key: value}))


@pytest.mark.parametrize("n, chunk_rows", [(0, 8), (1, 8), (8, 8), (19, 8)])
def test_batch_size_is_the_encoded_length(n, chunk_rows):
    registry = KeyRegistry.generate(0)
    binding = Binding(site="s", report_collector="rc", epoch=1)
    keys = [encrypt_match_key(7, [KeyRegistry.generate(h).public_key() for h in (0, 1, 2)], binding)]
    batch = encode_batch(
        registry.public_key(), binding, keys * n, np.zeros(n, FIELD_RECORD), chunk_rows=chunk_rows
    )
    head = batch[: batch_head_length(batch[: BATCH_HEADER.size])]  # the fixed header and the query tail
    assert batch_size(head) == (n, len(batch))
    with pytest.raises(InvalidReportError, match="truncated"):
        batch_size(head[:-1])


@pytest.mark.parametrize("head", [b"IPAB", b"XXXX" + bytes(38), b"IPAB\x09" + bytes(37)])
def test_batch_size_refuses_a_malformed_header(head):
    with pytest.raises(InvalidReportError):
        batch_size(head)


def test_pending_deadlines_share_one_thread_and_run_in_order():
    deadlines = Deadlines()
    ran, done = [], threading.Event()
    before = threading.active_count()
    for k in range(200):  # a pending query used to hold one OS thread each
        deadlines.call_later(0.05 + k / 10_000, ran.append, k)
    deadlines.call_later(0.2, done.set)
    assert threading.active_count() == before
    assert done.wait(30)
    assert ran == list(range(200))
    deadlines.close()


def test_a_failing_deadline_does_not_stop_the_others_and_close_drops_the_rest():
    errors, ran = [], threading.Event()
    deadlines = Deadlines(on_error=errors.append)
    deadlines.call_later(0.0, lambda: 1 / 0)
    deadlines.call_later(0.01, ran.set)
    assert ran.wait(30)
    assert [type(e) for e in errors] == [ZeroDivisionError]
    late = threading.Event()
    deadlines.call_later(3600, late.set)
    deadlines.close()
    assert len(deadlines) == 0 and not late.is_set()
