"""Three helpers' servers in this process, from the same files as a real network.

``InProcessNetwork`` is fast, for transport and lifecycle tests; ``tests/e2e``
starts real processes with ``ipa_client.local_network.LocalNetwork``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from ipa.attribution.config import QueryConfig
from ipa.crypto.binding import Binding
from ipa.mpc.context import Context
from ipa.mpc.memory import run_parties
from ipa.mpc.prss import agree_seeds
from ipa_client.local_network import make_network
from ipa_client.query_client import query_params
from ipa_helper.config import load_config
from ipa_helper.params import spec_from_proto
from ipa_helper.peers import PeerChannel
from ipa_helper.server import RunningHelper, start


class InProcessNetwork:
    """Three helpers' servers (TLS on) in this process."""

    def __init__(self, directory: Path, *, allow_unnoised: bool = True, **helper_settings: object) -> None:
        self.network_file = make_network(directory, allow_unnoised=allow_unnoised, **helper_settings)
        self.configs = [load_config(directory / f"helper{i}.toml") for i in (1, 2, 3)]
        self.helpers: list[RunningHelper] = [start(c) for c in self.configs]

    def run(
        self, protocol: Callable[[Context, Any], Any], inputs: Sequence[Any], query_id: str
    ) -> tuple[list, list]:
        """Run ``protocol`` as the three helpers over their real peer connections.

        The query is prepared on every helper first (a helper takes messages
        only for queries it knows), as a test-network query without noise.
        """
        params = query_params(
            Binding(site="s", report_collector="default", epoch=1), QueryConfig(1, 0), no_noise=True
        )
        for running in self.helpers:
            running.helper.prepare(query_id, spec_from_proto(params), bytes(32))
            # as if uploaded: the no-upload expiry must not end a long protocol run
            running.helper.queries.claim_upload(running.helper.queries.get(query_id))
        channels = [r.helper.channel(query_id) for r in self.helpers]

        def body(channel: PeerChannel, value: Any) -> Any:  # PRSS seeds agreed over the real connections
            return protocol(Context(channel.party, channel, agree_seeds(channel)), value)

        outputs = run_parties([partial(body, ch, value) for ch, value in zip(channels, inputs, strict=True)])
        return outputs, channels

    def close(self) -> None:
        for running in self.helpers:
            running.stop(grace=None)
