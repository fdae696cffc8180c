"""A report collector's identity: its name and the client certificate it proves it with.

``ipa keygen`` writes one per collector, ``DIR/collectors/NAME.toml``:

```toml
# Report collector "default": ipa query --identity collectors/default.toml ...
name = "default"
cert = "default.pem"   # client certificate signed by the network's collector CA
key = "default.key"    # its private key (mode 0600)
```

Paths are relative to the file. The helpers know the collector by its
certificate's fingerprint and the sites that authorised it; the name here is
what the client binds into its reports and queries (the helpers refuse any
other).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ipa.errors import ConfigError, InputError
from ipa.network import dumps_toml, write_private

__all__ = ["COLLECTORS_DIR", "Identity", "check_collector_name", "load_identity", "write_identity"]

COLLECTORS_DIR = "collectors"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def check_collector_name(name: str) -> str:
    """``name`` if it is a valid collector name (it names files), else InputError."""
    if not _NAME.fullmatch(name):
        raise InputError(
            f"collector name {name!r} must be 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Identity:
    """A report collector's name, client certificate and key (PEM)."""

    name: str
    cert: bytes
    key: bytes = field(repr=False)


def load_identity(path: str | Path) -> Identity:
    """Read ``NAME.toml`` and the certificate and key it names; ConfigError says what is wrong."""
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read collector identity {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    values = []
    for key in ("name", "cert", "key"):
        value = table.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: missing {key} (a collector identity from ipa keygen)")
        values.append(value)
    name, cert, key = values
    try:
        return Identity(name, (path.parent / cert).read_bytes(), (path.parent / key).read_bytes())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {exc.filename}: {exc.strerror}") from None


def write_identity(directory: str | Path, name: str, cert: bytes, key: bytes) -> Path:
    """Write ``NAME.pem``, ``NAME.key`` (0600) and ``NAME.toml`` in ``directory``; return the toml's path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    check_collector_name(name)
    (out / f"{name}.pem").write_bytes(cert)
    write_private(out / f"{name}.key", key)
    path = out / f"{name}.toml"
    header = f"# Report collector {name!r}: ipa query --identity {out.name}/{path.name} ...\n"
    path.write_text(header + dumps_toml({"name": name, "cert": f"{name}.pem", "key": f"{name}.key"}))
    return path
