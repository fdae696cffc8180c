"""``ipa keygen``: make everything a three-helper network needs.

Writes, in ``--out DIR``, for I = 1, 2, 3:

- ``helperI.hpke.toml``: the helper's HPKE key registry (private, mode 0600);
- ``helperI.pem`` / ``helperI.key``: its TLS certificate and key (key mode 0600);
- ``helperI.toml``: its config, so ``ipa-helper --config DIR/helperI.toml``
  starts it (see ``ipa_helper.config``);
- ``network.toml``: for user agents and report collectors: each helper's
  HPKE public key, address and certificate;
- ``ca.pem`` / ``ca.key``: the network's certificate authority for report
  collectors (keep ``ca.key`` offline: it issues collector credentials);
- ``collectors/NAME.toml`` (with ``NAME.pem``, ``NAME.key``): each report
  collector's identity, for ``ipa query --identity`` (``ipa_client.identity``).

``--collector NAME=SITE[,SITE...]`` (repeatable) names the report
collectors and the sites that authorised each; without it there is one
collector, ``default``, authorised for every site. Each helper config lists
the collectors (name, sites, certificate fingerprint): a helper serves no
one else.

Helper I listens for collectors on ``--base-port`` + 2(I−1) and for its
peers on the next port, at ``--host``; the six ports P … P+5 must exist, so
P is in [1, 65530]. With ``--compose`` the helpers listen
on all interfaces and reach each other as ``helperI`` (the service names of
``docker-compose.yml``), while ``network.toml`` still points at ``--host``;
it also writes ``compose.env``, the variables ``docker-compose.yml`` reads:
the uid:gid the containers run as (the caller's, who owns the 0600 keys)
and the three collector ports.
``--security`` (default ``malicious``) is the security mode ``network.toml``
publishes as the network's (``security = "malicious"``): ``ipa query`` asks
for it unless told otherwise. Helpers refuse semi-honest queries unless
their config has ``allow_semi_honest = true``, which ``--allow-semi-honest``
(or ``--security semi-honest``) writes (``docs/malicious.md``).
``--allow-unnoised`` makes a test network that honours ``--no-noise``;
``--epoch-budget`` sets the ε each site may spend per epoch (default 10) and
``--delta`` the network's one δ (default 1e-9): every noised query is
calibrated at it, and a query asking for another δ is refused.
``--workers W`` (W > 1) gives each helper config a ``[cluster]`` table:
each helper becomes a coordinator of W Ray worker actors on a local Ray
cluster of its own (``ipa_helper.cluster``; needs ``pip install
'ipa[cluster]'``); set its ``address`` to use an existing Ray cluster.
``--epoch-seconds`` and ``--epoch-origin`` set the epoch schedule that
``network.toml`` publishes (``[epochs]``; default: weeks from Unix time 0):
user agents take their epoch from their own clock by it.

Existing files are kept unless ``--force``. Prints one JSON object:
``{"out": DIR, "network": path, "hpke_keys": [...], "helper_configs": [...], "suite": name,
"collectors": {NAME: identity path}}``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path

from ipa.certs import fingerprint, issue_collector, make_ca, make_identity
from ipa.crypto.hpke import Suite
from ipa.crypto.keys import KeyRegistry
from ipa.epochs import DEFAULT_EPOCH_SECONDS, EpochSchedule
from ipa.errors import InputError
from ipa.mpc.memory import SECURITY_MODES
from ipa.network import HelperEntry, Network, dumps_toml, write_key_registry, write_private
from ipa_client.commands._types import non_negative_int, positive_float, positive_int
from ipa_client.identity import COLLECTORS_DIR, check_collector_name, write_identity

__all__ = [
    "COMPOSE_ENV_FILE",
    "DEFAULT_COLLECTORS",
    "HELP",
    "NAME",
    "NETWORK_FILE",
    "add_arguments",
    "collector_spec",
    "helper_ports",
    "hpke_key_file",
    "run",
    "write_collectors",
    "write_compose_env",
    "write_helper_configs",
    "write_hpke_keys",
    "write_network",
    "write_tls_identities",
]

NAME = "keygen"
HELP = "make the HPKE keys of a three-helper network and its network.toml"
NETWORK_FILE = "network.toml"
COMPOSE_ENV_FILE = "compose.env"

_SUITES = {"x25519": Suite.X25519, "mlkem768-x25519": Suite.MLKEM768_X25519}
DEFAULT_COLLECTORS: Mapping[str, tuple[str, ...]] = {"default": ("*",)}
DEFAULT_DELTA = 1e-9


def collector_spec(text: str) -> tuple[str, tuple[str, ...]]:
    """``NAME=SITE[,SITE...]`` as (name, sites), or ArgumentTypeError."""
    name, sep, sites = text.partition("=")
    names = tuple(s.strip() for s in sites.split(",") if s.strip())
    if not sep or not names:
        raise argparse.ArgumentTypeError(f"must be NAME=SITE[,SITE...], got {text!r}")
    try:
        check_collector_name(name.strip())
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name.strip(), names


def _delta(text: str) -> float:
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text!r}")
    return value


def hpke_key_file(helper: int) -> str:
    """The key file name of helper ``helper`` (0, 1, 2)."""
    return f"helper{helper + 1}.hpke.toml"


MAX_BASE_PORT = 65535 - 5
"""The six ports P … P+5 of a network must all be TCP ports."""


def helper_ports(base_port: int, helper: int) -> tuple[int, int]:
    """(collector port, peer port) of helper ``helper`` (0, 1, 2); InputError if they do not exist."""
    if isinstance(base_port, bool) or not isinstance(base_port, int) or not 1 <= base_port <= MAX_BASE_PORT:
        raise InputError(f"base port must be in [1, {MAX_BASE_PORT}] (six ports from it), got {base_port!r}")
    return base_port + 2 * helper, base_port + 2 * helper + 1


def _base_port(text: str) -> int:
    """``--base-port``: an int P such that P … P+5 are TCP ports."""
    value = positive_int(text)
    if value > MAX_BASE_PORT:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_BASE_PORT}: the network uses the six ports P to P+5, got {text!r}"
        )
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the output directory, the network's shape and ``--force``."""
    parser.add_argument("--out", required=True, metavar="DIR", help="directory to write the files to")
    parser.add_argument(
        "--host", default="127.0.0.1", help="host the helpers are reached at (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--base-port",
        type=_base_port,
        default=7100,
        metavar="P",
        help="first of six ports P..P+5, at most 65530 (default: 7100)",
    )
    parser.add_argument(
        "--allow-unnoised", action="store_true", help="a test network: helpers honour --no-noise"
    )
    parser.add_argument(
        "--security",
        choices=SECURITY_MODES,
        default="malicious",
        help="the network's default security mode, in network.toml (default: malicious)",
    )
    parser.add_argument(
        "--allow-semi-honest",
        action="store_true",
        help="helpers also run semi-honest queries (implied by --security semi-honest)",
    )
    parser.add_argument(
        "--epoch-budget",
        type=positive_float,
        default=10.0,
        metavar="EPS",
        help="privacy budget (ε) of each site per epoch (default: 10.0)",
    )
    parser.add_argument(
        "--epoch-seconds",
        type=positive_int,
        default=DEFAULT_EPOCH_SECONDS,
        metavar="S",
        help=f"length of an epoch, published in network.toml (default: {DEFAULT_EPOCH_SECONDS}, a week)",
    )
    parser.add_argument(
        "--epoch-origin",
        type=non_negative_int,
        default=0,
        metavar="T",
        help="Unix time at which epoch 0 starts, published in network.toml (default: 0)",
    )
    parser.add_argument(
        "--delta",
        type=_delta,
        default=DEFAULT_DELTA,
        help=f"the network's δ: every query and epoch is (ε, δ)-DP at it (default: {DEFAULT_DELTA:g})",
    )
    parser.add_argument(
        "--collector",
        type=collector_spec,
        action="append",
        metavar="NAME=SITE[,SITE...]",
        help="a report collector and the sites that authorised it (repeatable; "
        "default: one collector 'default' for every site)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="W",
        help="Ray worker actors per helper (default: 1, no Ray); W > 1 writes a [cluster] table",
    )
    parser.add_argument(
        "--compose", action="store_true", help="helper configs for docker-compose.yml (service names helperI)"
    )
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
    out_dir: str | PathLike[str],
    registries: Sequence[KeyRegistry],
    *,
    host: str | None = None,
    base_port: int = 7100,
    epochs: EpochSchedule | None = None,
    security: str | None = None,
    force: bool = False,
) -> Path:
    """Write ``network.toml`` publishing the current keys of ``registries``; return its path.

    With ``host``, each helper's entry also names its address and certificate file.
    With ``epochs``, the network publishes that epoch schedule (its ``[epochs]`` table).
    With ``security``, the network's security mode (absent: malicious).
    """
    path = Path(out_dir) / NETWORK_FILE
    _refuse_existing([path], force)
    network = Network.from_registries(registries)
    if host is not None:
        entries = tuple(
            HelperEntry(
                h.hpke, {"address": f"{host}:{helper_ports(base_port, i)[0]}", "cert": f"helper{i + 1}.pem"}
            )
            for i, h in enumerate(network.helpers)
        )
        network = Network(entries)
    extra: dict[str, object] = {}
    if security is not None:
        extra["security"] = security
    if epochs is not None:
        extra["epochs"] = epochs.to_dict()
    network = Network(network.helpers, extra)
    network.save(path)
    return path


def write_tls_identities(out_dir: str | PathLike[str], hosts: Sequence[str], *, force: bool = False) -> None:
    """A TLS key and self-signed certificate per helper (``helperI.pem``, ``helperI.key``)."""
    out = Path(out_dir)
    _refuse_existing([out / f"helper{i}.key" for i in (1, 2, 3)], force)
    for i in (1, 2, 3):
        cert, key = make_identity(i, [*hosts, f"helper{i}"])
        (out / f"helper{i}.pem").write_bytes(cert)
        write_private(out / f"helper{i}.key", key)


def write_collectors(
    out_dir: str | PathLike[str],
    collectors: Mapping[str, Sequence[str]] = DEFAULT_COLLECTORS,
    *,
    force: bool = False,
) -> list[dict[str, object]]:
    """The collector CA (``ca.pem``, ``ca.key``) and one identity per collector (``collectors/NAME.*``).

    Returns the helpers' ``[[collectors]]`` entries: name, sites, certificate fingerprint.
    """
    out = Path(out_dir)
    folder = out / COLLECTORS_DIR
    names = [check_collector_name(name) for name in collectors]
    _refuse_existing([out / "ca.key", *(folder / f"{n}.toml" for n in names)], force)
    ca_cert, ca_key = make_ca()
    out.mkdir(parents=True, exist_ok=True)
    (out / "ca.pem").write_bytes(ca_cert)
    write_private(out / "ca.key", ca_key)
    entries: list[dict[str, object]] = []
    for name, sites in collectors.items():
        cert, key = issue_collector(ca_cert, ca_key, name)
        write_identity(folder, name, cert, key)
        entries.append({"name": name, "sites": list(sites), "fingerprint": fingerprint(cert)})
    return entries


def write_helper_configs(
    out_dir: str | PathLike[str],
    *,
    host: str,
    base_port: int,
    allow_unnoised: bool,
    compose: bool,
    allow_semi_honest: bool = False,
    collectors: Sequence[Mapping[str, object]],
    epoch_budget: float = 10.0,
    delta: float = DEFAULT_DELTA,
    workers: int = 1,
    force: bool = False,
) -> list[Path]:
    """``helperI.toml`` for I = 1, 2, 3, naming the files this command writes beside them.

    ``collectors`` are the ``[[collectors]]`` entries :func:`write_collectors` returns;
    ``workers`` > 1 adds ``[cluster] workers = W`` (a local Ray cluster per helper).
    """
    out = Path(out_dir)
    paths = [out / f"helper{i}.toml" for i in (1, 2, 3)]
    _refuse_existing(paths, force)

    def peer_address(i: int) -> str:
        return f"{f'helper{i + 1}' if compose else host}:{helper_ports(base_port, i)[1]}"

    listen_host = "0.0.0.0" if compose else host
    for i, path in enumerate(paths):
        public, peer = helper_ports(base_port, i)
        config = {
            "helper": {
                "index": i + 1,
                "listen": f"{listen_host}:{public}",
                "peer_listen": f"{listen_host}:{peer}",
                "data_dir": f"data/helper{i + 1}",
                "allow_unnoised": allow_unnoised,
                "allow_semi_honest": allow_semi_honest,
                "epoch_budget": float(epoch_budget),
                "delta": float(delta),
            },
            "tls": {"cert": f"helper{i + 1}.pem", "key": f"helper{i + 1}.key", "collector_ca": "ca.pem"},
            "hpke": {"keys": hpke_key_file(i)},
            "peers": [
                {"index": j + 1, "address": peer_address(j), "cert": f"helper{j + 1}.pem"}
                for j in range(3)
                if j != i
            ],
            "collectors": [dict(c) for c in collectors],
        }
        if workers > 1:
            config["cluster"] = {"workers": workers, "address": ""}
        path.write_text(
            f"# Config of helper H{i + 1}: ipa-helper --config {path.name}\n" + dumps_toml(config)
        )
    return paths


def write_compose_env(out_dir: str | PathLike[str], *, base_port: int, force: bool = False) -> Path:
    """``compose.env``: the user the helper containers run as and their published ports.

    The containers run as the uid:gid of this process, so the files written
    here (private keys 0600) are theirs, and so is the ``data`` directory the
    helpers create: no chown, nothing world-readable. Collector port of
    helper I: ``base_port`` + 2(I−1), published on the same host port.
    """
    path = Path(out_dir) / COMPOSE_ENV_FILE
    _refuse_existing([path], force)
    lines = [
        "# Written by `ipa keygen --compose` for docker-compose.yml (helpers/compose.yaml).",
        "# The helpers run as the owner of these files; collectors reach them on these ports.",
        f"IPA_USER={os.getuid()}:{os.getgid()}",
        *(f"IPA_PORT_{i + 1}={helper_ports(base_port, i)[0]}" for i in range(3)),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _refuse_existing(paths: Sequence[Path], force: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise InputError(f"{', '.join(existing)} already exist(s); pass --force to replace")


def run(args: argparse.Namespace) -> int:
    """Write the key files and network.toml; print the JSON summary; return 0."""
    suite = _SUITES[args.suite]
    collectors = dict(args.collector) if args.collector else dict(DEFAULT_COLLECTORS)
    if args.collector and len(collectors) != len(args.collector):
        raise InputError("each --collector NAME may be given once")
    compose_env = [Path(args.out) / COMPOSE_ENV_FILE] if args.compose else []
    _refuse_existing([Path(args.out) / NETWORK_FILE, *compose_env], args.force)
    registries, key_paths = write_hpke_keys(args.out, suite, force=args.force)
    write_tls_identities(args.out, ["localhost", "127.0.0.1", args.host], force=args.force)
    entries = write_collectors(args.out, collectors, force=args.force)
    configs = write_helper_configs(
        args.out,
        host=args.host,
        base_port=args.base_port,
        allow_unnoised=args.allow_unnoised,
        allow_semi_honest=args.allow_semi_honest or args.security == "semi-honest",
        compose=args.compose,
        collectors=entries,
        epoch_budget=args.epoch_budget,
        delta=args.delta,
        workers=args.workers,
        force=args.force,
    )
    epochs = EpochSchedule(args.epoch_seconds, args.epoch_origin)
    network_path = write_network(
        args.out,
        registries,
        host=args.host,
        base_port=args.base_port,
        epochs=epochs,
        security=args.security,
        force=True,
    )
    if args.compose:
        write_compose_env(args.out, base_port=args.base_port, force=args.force)
    summary = {
        "out": args.out,
        "network": str(network_path),
        "hpke_keys": [str(p) for p in key_paths],
        "helper_configs": [str(p) for p in configs],
        "suite": suite.label,
        "collectors": {name: str(Path(args.out) / COLLECTORS_DIR / f"{name}.toml") for name in collectors},
    }
    print(json.dumps(summary))
    return 0
