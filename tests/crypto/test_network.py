"""network.toml and key files: round trips, preserved extensions, precise errors; the TOML writer."""

import math
import pickle
import stat
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipa.crypto.hpke import Suite
from ipa.crypto.keys import KeyRegistry
from ipa.errors import ConfigError
from ipa.network import Network, dumps_toml, read_key_registry, write_key_registry

SUITES = [pytest.param(s, marks=pytest.mark.skipif(not s.supported, reason="no ML-KEM here")) for s in Suite]


def network(suite=Suite.X25519):
    return Network.from_registries([KeyRegistry.generate(h, suite) for h in range(3)])


@pytest.mark.parametrize("suite", SUITES)
def test_round_trip(tmp_path, suite):
    net = network(suite)
    net.save(tmp_path / "network.toml")
    assert Network.load(tmp_path / "network.toml") == net
    assert net.suite is suite and [k.helper for k in net.public_keys] == [0, 1, 2]


def test_unknown_fields_survive_a_round_trip():
    table = network().to_dict()
    table["helpers"][1] |= {"address": "127.0.0.1:7002", "tls": {"cert": "h2.pem"}}
    table["deadline_seconds"] = 30
    net = Network.from_toml(dumps_toml(table))
    assert net.helpers[1].extra == {"address": "127.0.0.1:7002", "tls": {"cert": "h2.pem"}}
    assert net.extra == {"deadline_seconds": 30}
    assert tomllib.loads(net.to_toml()) == table


def test_helpers_may_be_listed_in_any_order():
    net = network()
    table = net.to_dict()
    table["helpers"].reverse()
    assert Network.from_toml(dumps_toml(table)) == net


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.update(format=2), "format must be 1"),
        (lambda t: t.update(hpke_suite="P256"), "field hpke_suite"),
        (lambda t: t["helpers"].pop(), "exactly three"),
        (lambda t: t["helpers"][0].update(helper=2), "helper = 1, 2 and 3 once each"),
        (lambda t: t["helpers"][0].update(helper=4), "field helper: must be 1, 2 or 3"),
        (lambda t: t["helpers"][2].pop("hpke_public_key"), "field hpke_public_key: missing"),
        (
            lambda t: t["helpers"][2].update(hpke_public_key="AAAA"),
            "helper = 3: bad hpke_key_id or hpke_public_key",
        ),
        (lambda t: t["helpers"][2].update(hpke_key_id=0), "bad hpke_key_id"),
    ],
)
def test_malformed_network_files(change, message):
    table = network().to_dict()
    change(table)
    with pytest.raises(ConfigError, match=message):
        Network.from_toml(dumps_toml(table), "net.toml")


def test_networks_pickle():
    net = Network.from_toml(dumps_toml(network().to_dict() | {"extra_field": [1, 2]}))
    assert pickle.loads(pickle.dumps(net)) == net


def test_unreadable_and_invalid_toml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        Network.load(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Network.from_toml("format = = 1")


def test_key_files_are_private_and_round_trip(tmp_path):
    registry = KeyRegistry.generate(2).rotate()
    path = tmp_path / "helper3.hpke.toml"
    write_key_registry(path, registry)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_registry(path) == registry
    path.write_text("helper = 1\n")
    with pytest.raises(ConfigError, match=r"helper3\.hpke\.toml"):
        read_key_registry(path)


# ----------------------------------------------------------------- the writer

keys = st.text(min_size=1, max_size=8)
scalars = st.one_of(
    st.text(max_size=12),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=False),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)


@settings(deadline=None)
@given(
    st.dictionaries(
        keys, values | st.lists(st.dictionaries(keys, values, max_size=3), min_size=1, max_size=2)
    )
)
def test_dumps_toml_round_trips_through_tomllib(table):
    assert tomllib.loads(dumps_toml(table)) == table


def test_dumps_toml_special_values_and_refusals():
    text = dumps_toml({"nan": math.nan, "inf": -math.inf, "s": 'a"\\\n\x01é', "k y": 1})
    loaded = tomllib.loads(text)
    assert math.isnan(loaded["nan"]) and loaded["inf"] == -math.inf
    assert loaded["s"] == 'a"\\\n\x01é' and loaded["k y"] == 1
    with pytest.raises(ValueError, match="64 bits"):
        dumps_toml({"x": 2**63})
    with pytest.raises(TypeError, match="cannot write"):
        dumps_toml({"x": object()})
    with pytest.raises(TypeError, match="keys must be strings"):
        dumps_toml({1: 2})
