"""The helper network file (``network.toml``), helper key files, and a tiny TOML writer.

``network.toml`` is what user agents and report collectors need to know
about a helper network; ``ipa keygen`` writes it. Format 1::

    format = 1
    hpke_suite = "X25519-HKDF-SHA256-AES-128-GCM"

    [[helpers]]              # exactly three, helper = 1, 2, 3 (H1, H2, H3)
    helper = 1
    hpke_key_id = 1          # the key id reports name, 1..255
    hpke_public_key = "…"    # base64 of the raw public key (see ipa.crypto.hpke)

Per helper, ``ipa keygen`` also writes ``address`` (where collectors reach
it) and ``cert`` (its TLS certificate, relative to the file). Keys this
module does not know are kept in ``extra`` and written back unchanged, so
readers and writers of different ages can share a file.

Each helper's private keys live in their own file (``hpke_keys.toml``, mode
0600, see :meth:`ipa.crypto.keys.KeyRegistry.to_dict`). Reading uses
``tomllib``; :func:`dumps_toml` writes the subset of TOML these files need.
Malformed files raise :class:`~ipa.errors.ConfigError` naming the file and
the field.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ipa.crypto.hpke import PublicKey, Suite
from ipa.crypto.keys import HelperPublicKey, KeyRegistry
from ipa.epochs import EpochSchedule
from ipa.errors import ConfigError, InputError
from ipa.mpc.memory import SECURITY_MODES

__all__ = [
    "NETWORK_FORMAT",
    "HelperEntry",
    "Network",
    "dumps_toml",
    "read_key_registry",
    "write_key_registry",
    "write_private",
]

NETWORK_FORMAT = 1


@dataclass(frozen=True)
class HelperEntry:
    """One helper of a network: its HPKE public key, plus fields later formats add (``extra``)."""

    hpke: HelperPublicKey
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    def __reduce__(self) -> tuple[object, ...]:
        return (HelperEntry, (self.hpke, dict(self.extra)))

    @property
    def helper(self) -> int:
        return self.hpke.helper


@dataclass(frozen=True)
class Network:
    """Three helpers (H1, H2, H3 at indices 0, 1, 2) sharing one HPKE suite."""

    helpers: tuple[HelperEntry, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        helpers = tuple(self.helpers)
        if [h.helper for h in helpers] != [0, 1, 2]:
            raise ConfigError("a network has exactly three helpers, H1, H2 and H3, in that order")
        if len({h.hpke.suite for h in helpers}) != 1:
            raise ConfigError("all three helpers of a network must use the same HPKE suite")
        object.__setattr__(self, "helpers", helpers)
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    def __reduce__(self) -> tuple[object, ...]:
        return (Network, (self.helpers, dict(self.extra)))

    @classmethod
    def from_registries(cls, registries: Sequence[KeyRegistry]) -> Network:
        """The network whose helpers publish the current keys of ``registries`` (H1, H2, H3)."""
        return cls(tuple(HelperEntry(r.public_key()) for r in registries))

    @property
    def epochs(self) -> EpochSchedule:
        """The network's epoch schedule (the ``[epochs]`` table; absent: weeks from Unix time 0)."""
        try:
            return EpochSchedule.from_dict(self.extra.get("epochs"))
        except (InputError, TypeError) as exc:
            raise ConfigError(f"network.toml, [epochs]: {exc}") from None

    @property
    def security(self) -> str:
        """The security mode of the network's queries (``security``; absent: ``"malicious"``).

        ``ipa keygen`` writes it; ``ipa query`` asks for it unless told
        otherwise, and a helper refuses a semi-honest query unless its config
        has ``allow_semi_honest = true`` (``docs/malicious.md``).
        """
        mode = self.extra.get("security", "malicious")
        if mode not in SECURITY_MODES:
            modes = ", ".join(SECURITY_MODES)
            raise ConfigError(f"network.toml, security: must be one of {modes}, got {mode!r}")
        return str(mode)

    @property
    def suite(self) -> Suite:
        return self.helpers[0].hpke.suite

    @property
    def public_keys(self) -> tuple[HelperPublicKey, ...]:
        """Each helper's current public key, H1 first."""
        return tuple(h.hpke for h in self.helpers)

    def to_dict(self) -> dict[str, Any]:
        """The TOML table of ``network.toml``."""
        helpers = []
        for h in self.helpers:
            entry = {
                "helper": h.helper + 1,
                "hpke_key_id": h.hpke.key_id,
                "hpke_public_key": base64.b64encode(h.hpke.public_key.raw).decode("ascii"),
            }
            helpers.append(entry | {k: v for k, v in h.extra.items() if k not in entry})
        top = {"format": NETWORK_FORMAT, "hpke_suite": self.suite.label}
        return (
            top
            | {k: v for k, v in self.extra.items() if k not in top and k != "helpers"}
            | {"helpers": helpers}
        )

    def to_toml(self) -> str:
        header = "# The helper network: its helpers and their HPKE public keys (see ipa.network).\n"
        return header + dumps_toml(self.to_dict())

    @classmethod
    def from_toml(cls, text: str, source: str = "network.toml") -> Network:
        """Parse ``network.toml`` text; ConfigError names ``source`` and the bad field."""
        try:
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"{source} is not a network.toml (not valid TOML: {exc}); "
                "pass the network.toml that ipa keygen wrote"
            ) from None
        if "format" not in table:
            raise ConfigError(
                f"{source} is not a network.toml ({_what_it_is(table)}); "
                "pass the network.toml that ipa keygen wrote beside it"
            )
        if table["format"] != NETWORK_FORMAT:
            raise ConfigError(f"{source}: format must be {NETWORK_FORMAT}, got {table['format']!r}")
        try:
            suite = Suite.from_label(table.get("hpke_suite"))  # type: ignore[arg-type]
        except InputError as exc:
            raise ConfigError(f"{source}, field hpke_suite: {exc}") from None
        entries = table.get("helpers")
        if (
            not isinstance(entries, list)
            or len(entries) != 3
            or not all(isinstance(e, dict) for e in entries)
        ):
            raise ConfigError(f"{source}: must have exactly three [[helpers]] tables")
        helpers = sorted((_helper_entry(e, suite, source) for e in entries), key=lambda h: h.helper)
        if [h.helper for h in helpers] != [0, 1, 2]:
            raise ConfigError(f"{source}: [[helpers]] must have helper = 1, 2 and 3 once each")
        extra = {k: v for k, v in table.items() if k not in ("format", "hpke_suite", "helpers")}
        return cls(tuple(helpers), extra)

    @classmethod
    def load(cls, path: str | PathLike[str]) -> Network:
        """Read a ``network.toml`` file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: cannot read: not UTF-8 text (is it a network.toml?)") from None
        return cls.from_toml(text, str(path))

    def save(self, path: str | PathLike[str]) -> None:
        """Write ``network.toml`` (atomically: a temporary file, then a rename)."""
        _write_atomic(Path(path), self.to_toml(), mode=0o644)


def _helper_entry(entry: Mapping[str, Any], suite: Suite, source: str) -> HelperEntry:
    where = f"{source}, [[helpers]] helper = {entry.get('helper')!r}"
    helper = entry.get("helper")
    if not isinstance(helper, int) or isinstance(helper, bool) or helper not in (1, 2, 3):
        raise ConfigError(f"{where}, field helper: must be 1, 2 or 3")
    try:
        raw = base64.b64decode(entry["hpke_public_key"], validate=True)
        public = HelperPublicKey(helper - 1, entry["hpke_key_id"], PublicKey(suite, raw))
    except KeyError as exc:
        raise ConfigError(f"{where}, field {exc.args[0]}: missing") from None
    except (binascii.Error, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: bad hpke_key_id or hpke_public_key: {exc}") from None
    known = ("helper", "hpke_key_id", "hpke_public_key")
    return HelperEntry(public, {k: v for k, v in entry.items() if k not in known})


def write_key_registry(path: str | PathLike[str], registry: KeyRegistry) -> None:
    """Write a helper's private keys to ``path`` with mode 0600 (atomically)."""
    header = f"# H{registry.helper + 1}'s HPKE private keys: keep secret (see ipa.crypto.keys).\n"
    _write_atomic(Path(path), header + dumps_toml(registry.to_dict()), mode=0o600)


def read_key_registry(path: str | PathLike[str]) -> KeyRegistry:
    """Read a helper's key file; ConfigError if it is unreadable or malformed."""
    try:
        table = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        return KeyRegistry.from_dict(table)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read key file: {exc}") from None
    except InputError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def write_private(path: str | PathLike[str], data: bytes) -> None:
    """Write a secret file (mode 0600 from the start, atomically), e.g. a TLS private key."""
    _write_atomic(Path(path), data, mode=0o600)


def _write_atomic(path: Path, text: str | bytes, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        if isinstance(text, bytes):
            with os.fdopen(fd, "wb") as out:
                out.write(text)
        else:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
                out.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- TOML writer

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_INT64 = (-(2**63), 2**63 - 1)


def dumps_toml(table: Mapping[str, Any]) -> str:
    """``table`` as TOML text that ``tomllib.loads`` reads back equal.

    Values: str, int (64-bit), float, bool, lists, and nested mappings
    (written as ``[tables]``; a non-empty list of mappings as ``[[arrays of
    tables]]``; mappings inside lists inline). Anything else is a TypeError;
    an int outside 64 bits a ValueError.
    """
    lines: list[str] = []
    _table(lines, (), table)
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_table_array(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _table(lines: list[str], path: tuple[str, ...], table: Mapping[str, Any]) -> None:
    nested = []
    for key, value in table.items():
        if isinstance(value, Mapping) or _is_table_array(value):
            nested.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in nested:
        header = ".".join(_key(k) for k in (*path, key))
        if isinstance(value, Mapping):
            lines += ["", f"[{header}]"]
            _table(lines, (*path, key), value)
        else:
            for item in value:
                lines += ["", f"[[{header}]]"]
                _table(lines, (*path, key), item)


def _key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"TOML keys must be strings, got {type(key).__name__}")
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"TOML integers must fit in 64 bits, got {value}")
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _what_it_is(table: dict) -> str:
    """A guess at what a TOML table that is not a network.toml is, for error messages."""
    if isinstance(table.get("helper"), dict):
        return "it looks like a helper's config"
    if "current_key_id" in table:
        return "it looks like a helper's HPKE key file"
    return f"it has no format = {NETWORK_FORMAT}"
