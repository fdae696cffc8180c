"""Tests of ipa.synthetic: size, determinism, widths and the shape of the model."""

from __future__ import annotations

import numpy as np
import pytest

from ipa.errors import InputError
from ipa.events import Events
from ipa.synthetic import _distinct_keys, generate


@pytest.fixture(scope="module")
def large() -> Events:
    return generate(200_000, seed=11)


@pytest.mark.parametrize("n", [0, 1, 2, 7, 1000, 12_345])
def test_size_is_exact(n: int) -> None:
    assert len(generate(n, seed=n)) == n


def test_deterministic_per_seed() -> None:
    assert generate(5000, seed=42) == generate(5000, seed=42)
    assert generate(5000, seed=42) != generate(5000, seed=43)


def test_rows_are_sorted_by_timestamp(large: Events) -> None:
    assert (np.diff(large.timestamp.astype(np.int64)) >= 0).all()


def test_defaults_respect_widths(large: Events) -> None:
    assert large.timestamp.max() < 2**20
    assert large.match_key.max() < 2**40
    assert large.breakdown_key.max() < 16
    assert large.constraint_id.max() < 4
    assert large.trigger_value.max() < 2**16


@pytest.mark.parametrize(
    "widths",
    [
        {"match_key_bits": 11, "timestamp_bits": 6, "value_bits": 3, "breakdown_bits": 2,
         "num_breakdowns": 4, "num_constraint_ids": 1},
        {"match_key_bits": 64, "timestamp_bits": 64, "value_bits": 64, "breakdown_bits": 64,
         "num_breakdowns": 1000, "num_constraint_ids": 9},
        {"match_key_bits": 1, "timestamp_bits": 1, "value_bits": 1, "breakdown_bits": 1,
         "num_breakdowns": 1},
    ],
)  # fmt: skip
def test_narrow_and_wide_widths_are_respected(widths: dict[str, int]) -> None:
    n = 2 if widths["match_key_bits"] == 1 else 3000
    events = generate(n, seed=5, **widths)
    assert len(events) == n
    assert int(events.timestamp.max()) < 2 ** widths["timestamp_bits"]
    assert int(events.match_key.max()) < 2 ** widths["match_key_bits"]
    assert int(events.trigger_value.max()) < 2 ** widths["value_bits"]
    assert int(events.breakdown_key.max()) < widths["num_breakdowns"]
    assert int(events.constraint_id.max()) < widths.get("num_constraint_ids", 4)


@pytest.mark.parametrize(("count", "bits"), [(1000, 10), (1024, 10), (5000, 64), (3, 2)])
def test_match_keys_are_distinct_and_within_width(count: int, bits: int) -> None:
    keys = _distinct_keys(np.random.default_rng(1), count, bits)
    assert keys.dtype == np.uint64
    assert len(keys) == len(np.unique(keys)) == count
    assert int(keys.max()) < 2**bits


def test_too_many_users_for_the_match_key_width_is_an_error() -> None:
    with pytest.raises(InputError, match="match_key_bits=1 allows 2 match keys"):
        generate(1000, seed=1, match_key_bits=1)


def test_events_per_user_are_heavy_tailed(large: Events) -> None:
    _, per_user = np.unique(large.match_key, return_counts=True)
    assert np.mean(per_user <= 3) > 0.75  # most users have one to three events
    assert np.mean(per_user == 1) > 0.5
    assert (per_user >= 100).sum() >= 10  # and a few have hundreds
    assert per_user.max() <= 1000


def test_sources_mostly_come_before_triggers(large: Events) -> None:
    users, user = np.unique(large.match_key, return_inverse=True)
    first_source = np.full(len(users), np.iinfo(np.uint64).max, dtype=np.uint64)
    sources = ~large.is_trigger
    np.minimum.at(first_source, user[sources], large.timestamp[sources])
    triggers = large.is_trigger & (first_source[user] < np.iinfo(np.uint64).max)
    after = large.timestamp[triggers] >= first_source[user[triggers]]
    assert after.mean() > 0.8


def test_kinds_and_fields(large: Events) -> None:
    triggers, sources = large.is_trigger, ~large.is_trigger
    assert 0.2 < triggers.mean() < 0.3
    assert (large.trigger_value[sources] == 0).all()
    assert (large.breakdown_key[triggers] == 0).all()
    values = large.trigger_value[triggers]
    assert values.min() >= 1
    assert np.median(values) < np.mean(values)  # right-skewed
    keys = np.bincount(large.breakdown_key[sources].astype(np.intp), minlength=16)
    assert (keys > 0).all()
    assert keys[0] > 3 * keys[15]  # a few campaigns dominate
    assert len(np.unique(large.constraint_id)) == 4


def test_trigger_fraction_extremes() -> None:
    assert not generate(500, seed=1, trigger_fraction=0.0).is_trigger.any()
    assert generate(500, seed=1, trigger_fraction=1.0).is_trigger.all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_events": -1}, "num_events must be at least 0, got -1"),
        ({"seed": -3}, "seed must be at least 0, got -3"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"num_breakdowns": 0}, r"num_breakdowns must be in \[1, 256\], got 0"),
        ({"num_breakdowns": 257}, r"num_breakdowns must be in \[1, 256\], got 257"),
        ({"num_constraint_ids": 0}, "num_constraint_ids must be at least 1"),
        ({"match_key_bits": 65}, r"match_key_bits must be in \[1, 64\], got 65"),
        ({"timestamp_bits": 0}, r"timestamp_bits must be in \[1, 64\], got 0"),
        ({"value_bits": 0}, "value_bits must be in"),
        ({"trigger_fraction": 1.5}, r"trigger_fraction must be in \[0, 1\]"),
        ({"trigger_fraction": float("nan")}, r"trigger_fraction must be in \[0, 1\]"),
        ({"trigger_fraction": "0.5"}, "trigger_fraction must be a number, got '0.5'"),
        ({"max_user_events": 0}, "max_user_events must be at least 1"),
    ],
)
def test_parameters_are_checked(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"num_events": 10, "seed": 1, **kwargs}
    with pytest.raises(InputError, match=message):
        generate(**arguments)  # type: ignore[arg-type]


def test_multi_site_events_put_sources_on_publishers_and_triggers_on_advertisers() -> None:
    from ipa.synthetic import ADVERTISERS, PUBLISHERS

    events = generate(20_000, seed=3, publishers=PUBLISHERS, advertisers=ADVERTISERS, max_devices=3)
    assert set(events.site[~events.is_trigger].tolist()) == set(PUBLISHERS)
    assert set(events.site[events.is_trigger].tolist()) == set(ADVERTISERS)
    # People read several publishers: some match keys have sources on two of them.
    keys = events.match_key[~events.is_trigger]
    pairs = np.unique(
        np.stack([keys, np.unique(events.site, return_inverse=True)[1][~events.is_trigger]]), axis=1
    )
    assert len(np.unique(pairs[0])) < pairs.shape[1]
    # Devices without a provider's key look like separate users: more match keys than people.
    single = generate(20_000, seed=3, publishers=PUBLISHERS, advertisers=ADVERTISERS)
    assert len(np.unique(events.match_key)) > len(np.unique(single.match_key))


def test_sites_need_both_sides() -> None:
    with pytest.raises(InputError, match="publishers and advertisers must be given together"):
        generate(10, seed=1, publishers=["a.example"])
    with pytest.raises(InputError, match="provider_share must be in"):
        generate(10, seed=1, provider_share=2.0)
