"""A whole helper network on this machine: files from ``ipa keygen``, three ``ipa-helper`` processes.

Used by ``ipa demo``, the end-to-end benchmark and the end-to-end tests. The
helpers are real processes (``python -m ipa_helper.server``) on free loopback
ports with TLS on; each logs to ``helperI.log`` in the network directory.
Report collectors authenticate with the identities in ``collectors/``
(by default one, ``default``, for every site: :attr:`LocalNetwork.identity`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

from ipa.certs import fingerprint
from ipa.errors import IpaError
from ipa.network import dumps_toml, read_key_registry
from ipa_client.commands.keygen import (
    DEFAULT_COLLECTORS,
    hpke_key_file,
    write_collectors,
    write_helper_configs,
    write_hpke_keys,
    write_network,
    write_tls_identities,
)
from ipa_client.identity import COLLECTORS_DIR, Identity, load_identity

__all__ = [
    "HelperProcess",
    "LocalNetwork",
    "collector_identity",
    "descendants",
    "free_base_port",
    "make_network",
]


def free_base_port() -> int:
    """A port P such that P … P+5 are free on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        socks = [socket.socket() for _ in range(6)]
        try:
            for offset, s in enumerate(socks):
                s.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise IpaError("no six free consecutive ports on 127.0.0.1")


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, grandchildren, …), read from /proc; [] where there is none."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def collector_identity(directory: Path, name: str = "default") -> Identity:
    """The identity of report collector ``name`` of the network in ``directory``."""
    return load_identity(directory / COLLECTORS_DIR / f"{name}.toml")


def _collector_entries(directory: Path, collectors: Mapping[str, Sequence[str]]) -> list[dict[str, object]]:
    """The ``[[collectors]]`` of the configs: existing identities are kept, else all are made anew."""
    folder = directory / COLLECTORS_DIR
    if (
        not all((folder / f"{name}.pem").exists() for name in collectors)
        or not (directory / "ca.pem").exists()
    ):
        return write_collectors(directory, collectors, force=True)
    return [
        {
            "name": name,
            "sites": list(sites),
            "fingerprint": fingerprint((folder / f"{name}.pem").read_bytes()),
        }
        for name, sites in collectors.items()
    ]


def make_network(
    directory: Path,
    *,
    allow_unnoised: bool = True,
    collectors: Mapping[str, Sequence[str]] = DEFAULT_COLLECTORS,
    workers: int = 1,
    security: str = "semi-honest",
    **helper_settings: object,
) -> Path:
    """Write a loopback network into ``directory``; return the path of network.toml.

    Keys, certificates and collector identities already in ``directory`` are
    kept (so reports made for them stay valid); configs and network.toml are
    rewritten with free ports. ``collectors`` maps each report collector's
    name to its sites (``"*"``: every site). ``helper_settings`` (e.g.
    ``timeout_seconds=5``) go into every helper's ``[helper]`` table;
    ``workers`` > 1 gives each helper W Ray worker actors (``[cluster]``).
    ``security`` is the network's mode (``network.toml``): ``semi-honest`` by
    default on this loopback test and demo network (malicious costs about 10×
    the time here, ``docs/malicious.md``), whose helpers then also allow
    semi-honest queries; ``malicious`` makes helpers that refuse them.
    """
    base = free_base_port()
    key_files = [directory / hpke_key_file(h) for h in range(3)]
    if all(path.exists() for path in key_files):
        registries = [read_key_registry(path) for path in key_files]
    else:
        registries, _ = write_hpke_keys(directory)
        write_tls_identities(directory, ["localhost", "127.0.0.1"])
    configs = write_helper_configs(
        directory,
        host="127.0.0.1",
        base_port=base,
        allow_unnoised=allow_unnoised,
        allow_semi_honest=security == "semi-honest",
        compose=False,
        collectors=_collector_entries(directory, collectors),
        workers=workers,
        force=True,
    )
    for path in configs:
        table = tomllib.loads(path.read_text())
        table["helper"].update(helper_settings)
        path.write_text(dumps_toml(table))
    return write_network(
        directory, registries, host="127.0.0.1", base_port=base, security=security, force=True
    )


class HelperProcess:
    """One ``ipa-helper --config FILE`` child process, logging to a file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0, env: dict[str, str] | None = None) -> None:
        """Start it (``env``: extra environment, e.g. IPA_FAILPOINT) and wait until it listens."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ipa_helper.server", "--config", str(self.config)],
                stdout=out,
                stderr=out,
                # Its own process group: a terminal's Ctrl-C reaches only the parent, which
                # cancels its query and then stops the helpers (see LocalNetwork.stop).
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        end = time.monotonic() + timeout
        while b'"listening"' not in self.log.read_bytes()[offset:]:
            if self.process.poll() is not None or time.monotonic() > end:
                self.kill()
                raise IpaError(f"helper {self.config.name} did not start: {self.log.read_text()[-1000:]}")
            time.sleep(0.05)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def kill(self) -> None:
        """SIGKILL: the helper gets no chance to tell anyone; nor do its Ray processes, if any."""
        if self.process and self.process.poll() is None:
            below = descendants(self.process.pid)  # a helper with workers: its own Ray cluster
            self.process.kill()
            self.process.wait(10)
            for pid in below:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM, without waiting."""
        if self.process and self.process.poll() is None:
            self.process.terminate()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 10 s."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class LocalNetwork:
    """Three helper processes from the files in ``directory``; a context manager that stops them."""

    def __init__(
        self,
        directory: Path,
        *,
        allow_unnoised: bool = True,
        collectors: Mapping[str, Sequence[str]] = DEFAULT_COLLECTORS,
        workers: int = 1,
        security: str = "semi-honest",
        **helper_settings: object,
    ) -> None:
        self.directory = directory
        self.network_file = make_network(
            directory,
            allow_unnoised=allow_unnoised,
            collectors=collectors,
            workers=workers,
            security=security,
            **helper_settings,
        )
        self._collectors = dict(collectors)
        self._start_seconds = 60.0 if workers == 1 else 240.0  # a Ray cluster each: slow on a busy machine
        self.helpers = [
            HelperProcess(directory / f"helper{i}.toml", directory / f"helper{i}.log") for i in (1, 2, 3)
        ]

    @property
    def identity(self) -> Identity:
        """The identity of the first report collector (``default`` unless told otherwise)."""
        return collector_identity(self.directory, next(iter(self._collectors)))

    def __enter__(self) -> LocalNetwork:
        try:
            for helper in self.helpers:
                helper.start(self._start_seconds)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kill(self) -> None:
        """SIGKILL all three (for a network whose state is thrown away, e.g. an interrupted demo)."""
        for helper in self.helpers:
            helper.kill()

    def stop(self) -> None:
        """SIGTERM all three at once, then wait for each (SIGKILL after 10 s)."""
        for helper in self.helpers:
            helper.terminate()
        for helper in self.helpers:
            helper.stop()
