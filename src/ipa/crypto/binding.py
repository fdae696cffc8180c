"""What every sealed share is bound to: the HPKE ``info`` string and short clear-text tags.

A match key (or a report collector's batch key) is sealed to one helper
with an ``info`` that names everything the helper will check::

    "private-attribution" 0x00         19 + 1 bytes, fixed label
    purpose                            1   1 = match-key shares, 2 = batch key
    format version                     1
    suite id                           1   (ipa.crypto.hpke.Suite)
    key id                             1
    helper index                       1   0, 1, 2 for H1, H2, H3
    epoch                              2   big-endian
    site                               2 + len   big-endian length, UTF-8
    report collector                   2 + len
    match-key provider                 2 + len

A helper rebuilds ``info`` from the query it runs (never from the report),
so a share made for another helper, site, report collector, provider or
epoch fails to open. Reports also carry 8-byte *tags* of the site, report
collector and provider in the clear (truncated, domain-separated SHA-256):
they are not a security mechanism (``info`` is), they only let a helper say
*which* binding a refused report got wrong instead of "decryption failed".
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass

from ipa._checks import integer
from ipa.errors import InputError

__all__ = ["MAX_EPOCH", "MAX_NAME_BYTES", "TAG_BYTES", "Binding", "Purpose", "check_name", "info", "tag"]

MAX_NAME_BYTES = 255
"""Longest site, report collector or provider name, in UTF-8 bytes."""
MAX_EPOCH = 0xFFFF
"""Epochs are two-byte numbers."""
TAG_BYTES = 8

_LABEL = b"private-attribution\x00"


class Purpose(enum.IntEnum):
    """What a sealed message holds; part of ``info`` so one can never stand in for the other."""

    MATCH_KEY = 1
    BATCH_KEY = 2


@dataclass(frozen=True)
class Binding:
    """The context a match key is made for and a query accepts: site, collector, provider, epoch.

    Names are non-empty (the provider may be empty: the user agent's own
    random key) and at most 255 UTF-8 bytes; ``epoch`` is in [0, 65535].
    """

    site: str
    report_collector: str
    epoch: int
    match_key_provider: str = ""

    def __post_init__(self) -> None:
        for name in ("site", "report_collector", "match_key_provider"):
            check_name(name, getattr(self, name), allow_empty=name == "match_key_provider")
        integer("epoch", self.epoch, 0, MAX_EPOCH)

    def tags(self) -> tuple[bytes, bytes, bytes]:
        """The clear-text tags of (site, report collector, match-key provider)."""
        return (
            tag("site", self.site),
            tag("report_collector", self.report_collector),
            tag("match_key_provider", self.match_key_provider),
        )


def check_name(name: str, value: object, allow_empty: bool = False) -> bytes:
    """``value``'s UTF-8 bytes, or InputError unless it is a str of 1 (0 if allowed) to 255 bytes."""
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string, got {type(value).__name__}")
    data = value.encode("utf-8")
    if len(data) > MAX_NAME_BYTES or (not data and not allow_empty):
        raise InputError(f"{name} must be 1 to {MAX_NAME_BYTES} UTF-8 bytes, got {len(data)}")
    return data


def tag(kind: str, name: str) -> bytes:
    """The 8-byte clear-text tag of a site, report collector or provider ``name``."""
    data = name.encode("utf-8")
    label = b"ipa tag\x00" + kind.encode("ascii") + b"\x00"
    return hashlib.sha256(label + struct.pack(">H", len(data)) + data).digest()[:TAG_BYTES]


def info(purpose: Purpose, version: int, suite: int, key_id: int, helper: int, binding: Binding) -> bytes:
    """The HPKE ``info`` string (layout in the module docstring)."""
    parts = [_LABEL, struct.pack(">BBBBBH", purpose, version, suite, key_id, helper, binding.epoch)]
    for name in (binding.site, binding.report_collector, binding.match_key_provider):
        data = name.encode("utf-8")
        parts += [struct.pack(">H", len(data)), data]
    return b"".join(parts)
