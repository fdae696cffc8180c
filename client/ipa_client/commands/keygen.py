"""``ipa keygen``: make a helper network's keys and its ``network.toml``.

Writes, in ``--out DIR``:

- ``helper1.hpke.toml``, ``helper2.hpke.toml``, ``helper3.hpke.toml``: each
  helper's HPKE key registry (private; mode 0600; ``ipa.network.read_key_registry``),
- ``network.toml``: the three public keys, for user agents and report
  collectors (``ipa.network.Network.load``).

Existing files are kept unless ``--force``. Prints one JSON object:
``{"out": DIR, "network": path, "hpke_keys": [path, path, path], "suite": name}``.

The pieces are functions (:func:`write_hpke_keys`, :func:`write_network`) so
that certificates and helper configs can be added to the same command.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

from ipa.crypto.hpke import Suite
from ipa.crypto.keys import KeyRegistry
from ipa.errors import InputError
from ipa.network import Network, write_key_registry

__all__ = [
    "HELP",
    "NAME",
    "NETWORK_FILE",
    "add_arguments",
    "hpke_key_file",
    "run",
    "write_hpke_keys",
    "write_network",
]

NAME = "keygen"
HELP = "make the HPKE keys of a three-helper network and its network.toml"
NETWORK_FILE = "network.toml"

_SUITES = {"x25519": Suite.X25519, "mlkem768-x25519": Suite.MLKEM768_X25519}


def hpke_key_file(helper: int) -> str:
    """The key file name of helper ``helper`` (0, 1, 2)."""
    return f"helper{helper + 1}.hpke.toml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--out``, ``--suite`` and ``--force``."""
    parser.add_argument("--out", required=True, metavar="DIR", help="directory to write the files to")
    parser.add_argument(
        "--suite",
        choices=sorted(_SUITES),
        default="x25519",
        help="HPKE KEM of the network (default: x25519; mlkem768-x25519 is the post-quantum hybrid)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing key files")


def write_hpke_keys(
    out_dir: str | PathLike[str], suite: Suite = Suite.X25519, *, force: bool = False
) -> tuple[list[KeyRegistry], list[Path]]:
    """Make and write one fresh key registry per helper; return them and their file paths.

    InputError if a key file exists and ``force`` is false (keys are never
    replaced by accident: reports sealed to them would be lost).
    """
    out = Path(out_dir)
    paths = [out / hpke_key_file(h) for h in range(3)]
    _refuse_existing(paths, force)
    out.mkdir(parents=True, exist_ok=True)
    registries = [KeyRegistry.generate(h, suite) for h in range(3)]
    for registry, path in zip(registries, paths, strict=True):
        write_key_registry(path, registry)
    return registries, paths


def write_network(
    out_dir: str | PathLike[str], registries: Sequence[KeyRegistry], *, force: bool = False
) -> Path:
    """Write ``network.toml`` publishing the current keys of ``registries``; return its path."""
    path = Path(out_dir) / NETWORK_FILE
    _refuse_existing([path], force)
    Network.from_registries(registries).save(path)
    return path


def _refuse_existing(paths: Sequence[Path], force: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise InputError(f"{', '.join(existing)} already exist(s); pass --force to replace")


def run(args: argparse.Namespace) -> int:
    """Write the key files and network.toml; print the JSON summary; return 0."""
    suite = _SUITES[args.suite]
    _refuse_existing([Path(args.out) / NETWORK_FILE], args.force)
    registries, key_paths = write_hpke_keys(args.out, suite, force=args.force)
    network_path = write_network(args.out, registries, force=True)
    summary = {
        "out": args.out,
        "network": str(network_path),
        "hpke_keys": [str(p) for p in key_paths],
        "suite": suite.label,
    }
    print(json.dumps(summary))
    return 0
