"""HPKE (RFC 9180, base mode, single shot) over ``cryptography.hazmat.primitives.hpke``.

Two suites, chosen per helper network:

- ``X25519``: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM. The
  encapsulated key is 32 bytes; a sealed message is ``enc ‖ ct ‖ tag``, 48
  bytes longer than its plaintext.
- ``MLKEM768_X25519``: the hybrid post-quantum KEM (X-Wing style,
  ML-KEM-768 + X25519) with the same KDF and AEAD; ``enc`` is 1120 bytes and
  an open costs about three times as much.

The HPKE API needs ``cryptography`` 47 or later; ML-KEM needs 48 or later
with an OpenSSL 3.5+ backend, which :attr:`Suite.supported` checks.

Keys are kept as raw bytes (:class:`PrivateKey`, :class:`PublicKey`) so they
can be written to files and sent to worker processes: an X25519 private key
is its 32-byte scalar, a hybrid one the 64-byte ML-KEM seed followed by the
X25519 scalar; public keys are the X25519 point, or the 1184-byte ML-KEM
key followed by it. Randomness comes from ``cryptography`` (the OS CSPRNG).

:func:`open_sealed` raises :class:`~ipa.errors.InvalidReportError` with
reason ``DECRYPTION_FAILED`` for every failure (wrong key, wrong ``info``,
any flipped or missing byte): one error, no oracle.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from ipa.errors import InputError, InvalidReportError, InvalidReportReason

__all__ = ["PrivateKey", "PublicKey", "Suite", "open_sealed", "seal"]

_X25519_BYTES = 32
_MLKEM_SEED_BYTES = 64
_MLKEM_PUBLIC_BYTES = 1184
_TAG_BYTES = 16


class Suite(enum.IntEnum):
    """An HPKE suite; the value is its one-byte id in report formats."""

    X25519 = 1
    MLKEM768_X25519 = 2

    @property
    def label(self) -> str:
        """The suite's name in ``network.toml``."""
        return _LABELS[self]

    @classmethod
    def from_label(cls, label: str) -> Suite:
        """The suite named ``label``, or InputError listing the known names."""
        for suite, name in _LABELS.items():
            if name == label:
                return suite
        raise InputError(f"HPKE suite must be one of {sorted(_LABELS.values())}, got {label!r}")

    @property
    def supported(self) -> bool:
        """Whether the installed ``cryptography`` can use this suite.

        ML-KEM needs cryptography 48 or later with an OpenSSL 3.5+ backend
        (the PyPI wheels); X25519 needs 47 or later.
        """
        return _supported(self)

    @property
    def enc_length(self) -> int:
        """Bytes of the encapsulated key at the start of every sealed message."""
        return _X25519_BYTES if self is Suite.X25519 else 1120

    def sealed_length(self, plaintext_length: int) -> int:
        """Bytes of a sealed message: ``enc ‖ ciphertext ‖ tag``."""
        return self.enc_length + plaintext_length + _TAG_BYTES

    @property
    def _hpke(self) -> hpke.Suite:
        return _HPKE[self]


@functools.cache
def _supported(suite: Suite) -> bool:
    if suite is Suite.X25519:
        return True
    try:
        mlkem.MLKEM768PrivateKey.generate()
    except UnsupportedAlgorithm:
        return False
    return True


_LABELS = {
    Suite.X25519: "X25519-HKDF-SHA256-AES-128-GCM",
    Suite.MLKEM768_X25519: "MLKEM768-X25519-HKDF-SHA256-AES-128-GCM",
}
_HPKE = {
    Suite.X25519: hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM),
    Suite.MLKEM768_X25519: hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM),
}


class _PicklesRaw:
    """Pickled as (suite, raw bytes) only, never with the cached library key object."""

    suite: Suite
    raw: bytes

    def __getstate__(self) -> dict[str, object]:
        return {"suite": int(self.suite), "raw": self.raw}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "suite", Suite(state["suite"]))
        object.__setattr__(self, "raw", state["raw"])


@dataclass(frozen=True)
class PublicKey(_PicklesRaw):
    """A helper's HPKE public key: its suite and raw bytes (layout in the module docstring)."""

    suite: Suite
    raw: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "suite", Suite(self.suite))
        expected = _X25519_BYTES if self.suite is Suite.X25519 else _MLKEM_PUBLIC_BYTES + _X25519_BYTES
        if not isinstance(self.raw, bytes) or len(self.raw) != expected:
            raise InputError(f"a {self.suite.label} public key must be {expected} bytes")

    @cached_property
    def _key(self) -> object:
        if self.suite is Suite.X25519:
            return x25519.X25519PublicKey.from_public_bytes(self.raw)
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(self.raw[:_MLKEM_PUBLIC_BYTES]),
            x25519.X25519PublicKey.from_public_bytes(self.raw[_MLKEM_PUBLIC_BYTES:]),
        )


@dataclass(frozen=True)
class PrivateKey(_PicklesRaw):
    """A helper's HPKE private key. ``repr`` never shows the key bytes."""

    suite: Suite
    raw: bytes = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "suite", Suite(self.suite))
        expected = _X25519_BYTES if self.suite is Suite.X25519 else _MLKEM_SEED_BYTES + _X25519_BYTES
        if not isinstance(self.raw, bytes) or len(self.raw) != expected:
            raise InputError(f"a {self.suite.label} private key must be {expected} bytes")

    @classmethod
    def generate(cls, suite: Suite = Suite.X25519) -> PrivateKey:
        """A fresh key pair's private half (from the OS CSPRNG); InputError if the suite is unsupported."""
        suite = Suite(suite)
        if not suite.supported:
            raise InputError(f"{suite.label} is not supported by the installed cryptography library")
        scalar = x25519.X25519PrivateKey.generate().private_bytes_raw()
        if suite is Suite.X25519:
            return cls(suite, scalar)
        return cls(suite, mlkem.MLKEM768PrivateKey.generate().private_bytes_raw() + scalar)

    def public_key(self) -> PublicKey:
        """The matching public key."""
        if self.suite is Suite.X25519:
            return PublicKey(self.suite, self._key.public_key().public_bytes_raw())  # type: ignore[attr-defined]
        kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(self.raw[:_MLKEM_SEED_BYTES]).public_key()
        dh = x25519.X25519PrivateKey.from_private_bytes(self.raw[_MLKEM_SEED_BYTES:]).public_key()
        return PublicKey(self.suite, kem.public_bytes_raw() + dh.public_bytes_raw())

    @cached_property
    def _key(self) -> object:
        if self.suite is Suite.X25519:
            return x25519.X25519PrivateKey.from_private_bytes(self.raw)
        return hpke.MLKEM768X25519PrivateKey(
            mlkem.MLKEM768PrivateKey.from_seed_bytes(self.raw[:_MLKEM_SEED_BYTES]),
            x25519.X25519PrivateKey.from_private_bytes(self.raw[_MLKEM_SEED_BYTES:]),
        )


def seal(public_key: PublicKey, plaintext: bytes, info: bytes) -> bytes:
    """HPKE base-mode single-shot seal: ``enc ‖ ct ‖ tag`` (empty AAD)."""
    return public_key.suite._hpke.encrypt(plaintext, public_key._key, info=info)  # type: ignore[arg-type]


def open_sealed(private_key: PrivateKey, sealed: bytes, info: bytes) -> bytes:
    """The plaintext of ``seal(public_key, plaintext, info)``.

    Raises InvalidReportError(DECRYPTION_FAILED) for any failure, whatever its cause.
    """
    try:
        return private_key.suite._hpke.decrypt(sealed, private_key._key, info=info)  # type: ignore[arg-type]
    except (InvalidTag, ValueError, TypeError):
        raise InvalidReportError(InvalidReportReason.DECRYPTION_FAILED) from None
