"""Key ids and each helper's key registry: a current key and the previous ones it still accepts.

A helper publishes one public key at a time (the *current* key, with a
one-byte key id). Rotating makes a new current key and keeps the old one
for decryption, so reports sealed to it before the rotation still open;
``rotate(keep=k)`` keeps at most k previous keys, and older ones are
forgotten (reports under them fail with ``UNKNOWN_KEY_ID``). Key ids are
1..255 and never reused while a key with that id is held.

A registry is plain data: :meth:`KeyRegistry.to_dict` and
:meth:`KeyRegistry.from_dict` map it to a TOML-ready table (private keys in
base64); ``ipa.network`` reads and writes the files.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ipa._checks import integer
from ipa.crypto.hpke import PrivateKey, PublicKey, Suite
from ipa.errors import InputError, InvalidReportError, InvalidReportReason

__all__ = ["HelperPublicKey", "KeyRegistry"]

_MAX_KEY_ID = 255


@dataclass(frozen=True)
class HelperPublicKey:
    """What a user agent or report collector needs to seal to helper ``helper`` (0, 1, 2)."""

    helper: int
    key_id: int
    public_key: PublicKey

    def __post_init__(self) -> None:
        integer("helper", self.helper, 0, 2)
        integer("key_id", self.key_id, 1, _MAX_KEY_ID)

    @property
    def suite(self) -> Suite:
        return self.public_key.suite


@dataclass(frozen=True)
class KeyRegistry:
    """One helper's private keys by key id; ``current`` is the one it publishes."""

    helper: int
    keys: Mapping[int, PrivateKey]
    current: int

    def __post_init__(self) -> None:
        integer("helper", self.helper, 0, 2)
        keys = {integer("key_id", k, 1, _MAX_KEY_ID): v for k, v in dict(self.keys).items()}
        if self.current not in keys:
            raise InputError(f"current key id {self.current} is not among the keys {sorted(keys)}")
        if len({key.suite for key in keys.values()}) > 1:
            raise InputError("all keys of a registry must use the same HPKE suite")
        object.__setattr__(self, "keys", MappingProxyType(keys))

    def __reduce__(self) -> tuple[object, ...]:
        return (KeyRegistry, (self.helper, dict(self.keys), self.current))

    @classmethod
    def generate(cls, helper: int, suite: Suite = Suite.X25519, key_id: int = 1) -> KeyRegistry:
        """A registry holding one fresh key."""
        return cls(helper, {key_id: PrivateKey.generate(suite)}, key_id)

    @property
    def suite(self) -> Suite:
        return self.keys[self.current].suite

    def public_key(self) -> HelperPublicKey:
        """The current key's public half, as the network publishes it."""
        return HelperPublicKey(self.helper, self.current, self.keys[self.current].public_key())

    def private_key(self, key_id: int) -> PrivateKey:
        """The key with ``key_id``; InvalidReportError(UNKNOWN_KEY_ID) if none is held."""
        try:
            return self.keys[key_id]
        except KeyError:
            raise InvalidReportError(InvalidReportReason.UNKNOWN_KEY_ID, detail=f"key id {key_id}") from None

    def rotate(self, keep: int = 1) -> KeyRegistry:
        """A registry with a fresh current key and the ``keep`` most recent earlier keys (0: none)."""
        integer("keep", keep, 0, _MAX_KEY_ID - 1)
        order = sorted(self.keys, key=lambda k: (k - self.current - 1) % _MAX_KEY_ID)  # oldest first
        retained = order[len(order) - keep :] if keep else []
        new_id = next(
            k for k in ((self.current + i - 1) % _MAX_KEY_ID + 1 for i in range(1, 256)) if k not in retained
        )
        keys = {k: self.keys[k] for k in retained}
        keys[new_id] = PrivateKey.generate(self.suite)
        return KeyRegistry(self.helper, keys, new_id)

    def to_dict(self) -> dict[str, Any]:
        """A TOML-ready table: helper (1-based), current key id, suite and the base64 keys."""
        return {
            "helper": self.helper + 1,
            "suite": self.suite.label,
            "current_key_id": self.current,
            "keys": [
                {"key_id": k, "private_key": base64.b64encode(v.raw).decode("ascii")}
                for k, v in sorted(self.keys.items())
            ],
        }

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> KeyRegistry:
        """Inverse of :meth:`to_dict`; InputError naming the bad entry."""
        try:
            suite = Suite.from_label(table["suite"])
            keys = {int(entry["key_id"]): _b64_key(entry["private_key"], suite) for entry in table["keys"]}
            return cls(integer("helper", table["helper"], 1, 3) - 1, keys, table["current_key_id"])
        except (KeyError, TypeError) as exc:
            raise InputError(f"key registry is missing or has a malformed entry: {exc}") from None


def _b64_key(text: str, suite: Suite) -> PrivateKey:
    try:
        return PrivateKey(suite, base64.b64decode(text, validate=True))
    except (binascii.Error, TypeError):
        raise InputError("private_key must be base64") from None
