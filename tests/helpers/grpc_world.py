"""A helper network for tests: keys, certificates and configs from ``ipa keygen``'s
functions in a temporary directory, on free loopback ports.

``InProcessNetwork`` starts the three helpers' servers in this process (fast,
for transport and lifecycle tests); ``tests/e2e`` starts real processes from
the same files.
"""

from __future__ import annotations

import socket
import threading
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ipa.mpc.context import Context
from ipa.mpc.prss import agree_seeds
from ipa.network import dumps_toml
from ipa_client.commands.keygen import (
    write_helper_configs,
    write_hpke_keys,
    write_network,
    write_tls_identities,
)
from ipa_helper.config import load_config
from ipa_helper.server import RunningHelper, start
from ipa_helper.transport import GrpcChannel


def free_base_port() -> int:
    """A port P such that P … P+5 are free on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + 5 > 65535:
            continue
        try:
            socks = []
            for port in range(base, base + 6):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no six free consecutive ports")


def make_network(directory: Path, *, allow_unnoised: bool = True, **helper_settings: object) -> Path:
    """Write a whole network into ``directory``; return the path of network.toml.

    ``helper_settings`` (e.g. ``timeout_seconds=5``) are added to every helper's ``[helper]`` table.
    """
    base = free_base_port()
    registries, _ = write_hpke_keys(directory)
    write_tls_identities(directory, ["localhost", "127.0.0.1"])
    configs = write_helper_configs(
        directory, host="127.0.0.1", base_port=base, allow_unnoised=allow_unnoised, compose=False
    )
    for path in configs:
        table = tomllib.loads(path.read_text())
        table["helper"].update(helper_settings)
        path.write_text(dumps_toml(table))
    return write_network(directory, registries, host="127.0.0.1", base_port=base)


class InProcessNetwork:
    """Three helpers' servers (TLS on) in this process."""

    def __init__(self, directory: Path, *, allow_unnoised: bool = True, **helper_settings: object) -> None:
        self.network_file = make_network(directory, allow_unnoised=allow_unnoised, **helper_settings)
        self.configs = [load_config(directory / f"helper{i}.toml") for i in (1, 2, 3)]
        self.helpers: list[RunningHelper] = [start(c) for c in self.configs]

    def run(
        self, protocol: Callable[[Context, Any], Any], inputs: Sequence[Any], query_id: str
    ) -> tuple[list, list]:
        """Run ``protocol`` as the three helpers over their real peer connections."""
        outputs: list[Any] = [None] * 3
        errors: list[BaseException] = []
        channels = []
        for party, running in enumerate(self.helpers):
            helper = running.helper
            channels.append(
                GrpcChannel(party, query_id, helper.peers, helper.mailbox, helper.config.timeout_seconds)
            )

        def body(party: int) -> None:
            try:
                ctx = Context(party, channels[party], agree_seeds(channels[party]))
                outputs[party] = protocol(ctx, inputs[party])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=body, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return outputs, channels

    def close(self) -> None:
        for running in self.helpers:
            running.stop(grace=None)
