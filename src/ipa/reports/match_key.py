"""The user agent's encrypted match key: XOR shares sealed to the three helpers.

A user agent XOR-splits its 64-bit match key into ``mk_0 ^ mk_1 ^ mk_2``
and seals ``mk_i ‖ mk_{i+1}`` to helper i (:func:`encrypt_match_key`),
bound (HPKE ``info``, see :mod:`ipa.crypto.binding`) to the format version,
suite, key id, helper, site, report collector, match-key provider and
epoch. The report collector learns nothing about the key.

All integers are little-endian, except inside HPKE ``info``.

Encrypted match key (user agent → site → report collector), version 2
-----------------------------------------------------------------------
::

    0   1   format version (2)
    1   1   HPKE suite id (ipa.crypto.hpke.Suite)
    2   2   epoch
    4   1+a site: length a, UTF-8
    .   1+b report collector: length b, UTF-8
    .   1+c match-key provider: length c, UTF-8 (may be empty)
    .   3×(2+S) for H1, H2, H3: helper index, key id, sealed part
                (S = enc + 16 + 16: 64 bytes for X25519, 1152 for ML-KEM-768+X25519)
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ipa.crypto.binding import Binding, Purpose, info
from ipa.crypto.hpke import Suite, seal
from ipa.crypto.keys import HelperPublicKey
from ipa.errors import InputError, InvalidReportError, InvalidReportReason
from ipa.mpc.sharing import share_boolean
from ipa.reports.layout import FORMAT_VERSION, MATCH_KEY_PLAINTEXT

__all__ = [
    "MATCH_KEY_BITS",
    "EncryptedMatchKey",
    "MatchKeyPart",
    "check_match_key",
    "encrypt_match_key",
]

MATCH_KEY_BITS = 64
"""User agents' match keys are 64-bit; a query uses the low ``match_key_bits`` of each."""
_EMK_HEAD = struct.Struct("<BBH")
_R = InvalidReportReason


@dataclass(frozen=True)
class MatchKeyPart:
    """The part of an encrypted match key for one helper: ``sealed`` opens to ``mk_i ‖ mk_{i+1}``."""

    helper: int
    key_id: int
    sealed: bytes


@dataclass(frozen=True)
class EncryptedMatchKey:
    """What ``get_encrypted_match_key`` returns: the binding, and one sealed part per helper."""

    binding: Binding
    suite: Suite
    parts: tuple[MatchKeyPart, MatchKeyPart, MatchKeyPart]

    def __post_init__(self) -> None:
        object.__setattr__(self, "suite", Suite(self.suite))
        length = self.suite.sealed_length(MATCH_KEY_PLAINTEXT)
        if len(self.parts) != 3 or [p.helper for p in self.parts] != [0, 1, 2]:
            raise InputError("an encrypted match key has one part for each of H1, H2, H3, in order")
        if any(len(p.sealed) != length for p in self.parts):
            raise InputError(f"each sealed part must be {length} bytes for {self.suite.label}")

    def to_bytes(self) -> bytes:
        """The version-1 encoding (module docstring)."""
        b = self.binding
        out = [_EMK_HEAD.pack(FORMAT_VERSION, self.suite, b.epoch)]
        for name in (b.site, b.report_collector, b.match_key_provider):
            data = name.encode("utf-8")
            out += [bytes([len(data)]), data]
        out += [bytes([p.helper, p.key_id]) + p.sealed for p in self.parts]
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> EncryptedMatchKey:
        """Parse :meth:`to_bytes`; InvalidReportError (TRUNCATED or CORRUPT) if malformed."""
        data = bytes(data)
        if len(data) < _EMK_HEAD.size:
            raise InvalidReportError(_R.TRUNCATED, detail="encrypted match key")
        version, suite_id, epoch = _EMK_HEAD.unpack_from(data)
        if version != FORMAT_VERSION or suite_id not in {int(s) for s in Suite}:
            raise InvalidReportError(_R.CORRUPT, detail="unknown encrypted match key version or suite")
        suite, at, names = Suite(suite_id), _EMK_HEAD.size, []
        for _ in range(3):
            if at >= len(data) or at + 1 + data[at] > len(data):
                raise InvalidReportError(_R.TRUNCATED, detail="encrypted match key")
            try:
                names.append(data[at + 1 : at + 1 + data[at]].decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidReportError(_R.CORRUPT, detail="name is not UTF-8") from None
            at += 1 + data[at]
        width = 2 + suite.sealed_length(MATCH_KEY_PLAINTEXT)
        if len(data) - at < 3 * width:
            raise InvalidReportError(_R.TRUNCATED, detail="encrypted match key")
        if len(data) - at > 3 * width:
            raise InvalidReportError(_R.CORRUPT, detail="trailing bytes after encrypted match key")
        chunks = [data[at + k * width : at + (k + 1) * width] for k in range(3)]
        try:
            binding = Binding(names[0], names[1], epoch, names[2])
            parts = tuple(MatchKeyPart(c[0], c[1], c[2:]) for c in chunks)
            return cls(binding, suite, parts)  # type: ignore[arg-type]
        except InputError as exc:
            raise InvalidReportError(_R.CORRUPT, detail=str(exc)) from None


def encrypt_match_key(
    match_key: int, public_keys: Sequence[HelperPublicKey], binding: Binding
) -> EncryptedMatchKey:
    """XOR-split a 64-bit ``match_key`` and seal ``mk_i ‖ mk_{i+1}`` to helper i (fresh shares)."""
    check_match_key(match_key)
    if [k.helper for k in public_keys] != [0, 1, 2] or len({k.suite for k in public_keys}) != 1:
        raise InputError("public_keys must be H1's, H2's and H3's, in that order, of one suite")
    shares = share_boolean(np.array([match_key], dtype=np.uint64), MATCH_KEY_BITS)
    parts = []
    for key, share in zip(public_keys, shares, strict=True):
        plaintext = share.left.astype("<u8").tobytes() + share.right.astype("<u8").tobytes()
        bound = info(Purpose.MATCH_KEY, FORMAT_VERSION, key.suite, key.key_id, key.helper, binding)
        parts.append(MatchKeyPart(key.helper, key.key_id, seal(key.public_key, plaintext, bound)))
    return EncryptedMatchKey(binding, public_keys[0].suite, tuple(parts))  # type: ignore[arg-type]


def check_match_key(key: object, name: str = "match_key") -> int:
    """``key`` as an int if it is a 64-bit unsigned integer; the InputError never shows the value."""
    if (
        isinstance(key, bool)
        or not isinstance(key, int | np.integer)
        or not 0 <= int(key) < 2**MATCH_KEY_BITS
    ):
        raise InputError(f"{name} must be an integer in [0, 2**{MATCH_KEY_BITS})")
    return int(key)
