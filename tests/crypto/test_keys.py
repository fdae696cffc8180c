"""Key registries: current and previous keys, rotation, unknown key ids, plain-data round trips."""

import pickle

import pytest

from ipa.crypto.hpke import Suite, open_sealed, seal
from ipa.crypto.keys import HelperPublicKey, KeyRegistry
from ipa.errors import InputError, InvalidReportError, InvalidReportReason

SUITES = [pytest.param(s, marks=pytest.mark.skipif(not s.supported, reason="no ML-KEM here")) for s in Suite]


def test_generate_publishes_the_current_key():
    registry = KeyRegistry.generate(2)
    public = registry.public_key()
    assert (public.helper, public.key_id, public.suite) == (2, 1, Suite.X25519)
    assert registry.keys[1].public_key() == public.public_key


def test_rotation_keeps_previous_keys_so_old_reports_still_open():
    registry = KeyRegistry.generate(0)
    old = registry.public_key()
    sealed_before = seal(old.public_key, b"x" * 16, b"i")
    rotated = registry.rotate()
    assert rotated.current == 2 and set(rotated.keys) == {1, 2}
    assert rotated.public_key().public_key != old.public_key
    assert open_sealed(rotated.private_key(old.key_id), sealed_before, b"i") == b"x" * 16
    twice = rotated.rotate()
    assert set(twice.keys) == {2, 3}  # keep=1: the oldest is forgotten
    with pytest.raises(InvalidReportError) as caught:
        twice.private_key(1)
    assert caught.value.reason is InvalidReportReason.UNKNOWN_KEY_ID
    assert set(twice.rotate(keep=0).keys) == {4}
    assert set(twice.rotate(keep=5).keys) == {2, 3, 4}


def test_key_ids_wrap_and_are_never_reused_while_held():
    registry = KeyRegistry.generate(1, key_id=254)
    registry = registry.rotate()
    assert registry.current == 255
    registry = registry.rotate(keep=2)
    assert registry.current == 1 and set(registry.keys) == {254, 255, 1}


@pytest.mark.parametrize("suite", SUITES)
def test_to_dict_round_trip_and_checks(suite):
    registry = KeyRegistry.generate(1, suite).rotate()
    table = registry.to_dict()
    assert table["helper"] == 2 and table["current_key_id"] == 2
    assert KeyRegistry.from_dict(table) == registry
    with pytest.raises(InputError, match="missing or has a malformed entry"):
        KeyRegistry.from_dict({"helper": 1})
    with pytest.raises(InputError, match="base64"):
        KeyRegistry.from_dict(table | {"keys": [{"key_id": 1, "private_key": "not base64!"}]})
    with pytest.raises(InputError, match="current key id 9"):
        KeyRegistry.from_dict(table | {"current_key_id": 9})


def test_registries_pickle():
    registry = KeyRegistry.generate(1).rotate()
    assert pickle.loads(pickle.dumps(registry)) == registry


def test_arguments_are_checked():
    with pytest.raises(InputError, match="helper must be in"):
        KeyRegistry.generate(3)
    with pytest.raises(InputError, match="key_id must be in"):
        KeyRegistry.generate(0, key_id=0)
    with pytest.raises(InputError, match="helper must be in"):
        HelperPublicKey(5, 1, KeyRegistry.generate(0).public_key().public_key)
