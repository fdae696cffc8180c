"""Three helpers in this process joined by in-memory peers, and a collector that talks to them.

The helpers are real (:class:`ipa_helper.helper.Helper` with real keys,
decoders and SQLite ledgers from ``make_network``); only the wire is
replaced by direct calls (:mod:`ipa_helper.memory`). ``Held`` wraps a link so
a test can hold one kind of message and release it at a chosen moment.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np

from ipa.attribution.config import QueryConfig
from ipa.crypto.binding import Binding
from ipa.mpc.channel import Peer
from ipa.mpc.replicated import AShares
from ipa.mpc.sharing import reconstruct
from ipa.network import Network
from ipa.query import QuerySpec, params_digest
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.local_network import make_network
from ipa_client.query_client import query_params
from ipa_helper.config import HelperConfig, load_config
from ipa_helper.helper import Helper
from ipa_helper.memory import MemoryNetwork
from ipa_helper.params import spec_from_proto
from ipa_helper.peers import PeerLink
from ipa_helper.queries import State

CONFIG = QueryConfig(num_breakdowns=4, cap=20, timestamp_bits=20)
BINDING = Binding(site="shop.example", report_collector="rc", epoch=3, match_key_provider="mkp")


def memory_configs(directory: Path, **settings: object) -> list[HelperConfig]:
    """Configs of a loopback network written into ``directory`` (keys kept if present)."""
    make_network(directory, **settings)
    return [load_config(directory / f"helper{i}.toml") for i in (1, 2, 3)]


def spec(*, epsilon: float = 0.0, no_noise: bool = True, config: QueryConfig = CONFIG) -> QuerySpec:
    return spec_from_proto(query_params(BINDING, config, epsilon=epsilon, no_noise=no_noise))


def uploads(directory: Path, events) -> list[bytes]:
    network = Network.load(directory / "network.toml")
    rc = ReportCollector(network, BINDING, CONFIG)
    rc.add_events(events, simulate_user_agents(events, network, BINDING))
    return rc.uploads()


class Collector:
    """A report collector's calls, made directly on the helpers (one token per helper)."""

    def __init__(self, net: MemoryNetwork) -> None:
        self.net = net
        self.tokens = [secrets.token_bytes(32) for _ in range(3)]
        self.specs: dict[str, QuerySpec] = {}

    def create(self, query: QuerySpec) -> str:
        hashes = [hashlib.sha256(t).digest() for t in self.tokens]
        query_id = self.net.helper(0).create_query(query, hashes)
        self.specs[query_id] = query
        return query_id

    def params(self, query_id: str) -> bytes:
        """The digest of the query's parameters that every upload carries."""
        return params_digest(self.specs[query_id], query_id)

    def upload(self, query_id: str, batches: list[bytes]) -> None:
        for party, batch in enumerate(batches):
            self.net.helper(party).upload(query_id, self.tokens[party], self.params(query_id), [batch])

    def state(self, query_id: str, party: int) -> State:
        return self.net.helper(party).queries.get(query_id).state

    def wait(self, query_id: str, until: Callable[[list[State]], bool], timeout: float = 30.0) -> list[State]:
        end = time.monotonic() + timeout
        while True:
            states = [self.state(query_id, p) for p in range(3)]
            if until(states):
                return states
            if time.monotonic() > end:
                raise AssertionError(f"query states stayed {states}")
            time.sleep(0.005)

    def wait_final(self, query_id: str) -> list[State]:
        return self.wait(query_id, lambda states: all(s.final for s in states))

    def results(self, query_id: str) -> np.ndarray:
        shares: list[AShares] = [
            self.net.helper(p).results(query_id, self.tokens[p]) for p in range(3)
        ]
        return reconstruct(shares).view(np.int64)


class Held(PeerLink):
    """A link that holds every message of ``step`` until :meth:`release` (other calls pass)."""

    def __init__(self, inner: PeerLink, step: str) -> None:
        self.index = inner.index
        self._inner, self._step = inner, step
        self._released = threading.Event()
        self.held = threading.Event()

    def release(self) -> None:
        self._released.set()

    def prepare(self, query_id: str, spec: QuerySpec, token_hash: bytes) -> None:
        self._inner.prepare(query_id, spec, token_hash)

    def abort(self, query_id: str, reason: str) -> None:
        self._inner.abort(query_id, reason)

    def outcome(self, query_id: str) -> str:
        return self._inner.outcome(query_id)

    def send(self, query_id: str, step: str, sender: int, arrays: list[np.ndarray]) -> None:
        if step == self._step:
            self.held.set()
            self._released.wait(60)  # bounded: a failing test must not hang the suite
        self._inner.send(query_id, step, sender, arrays)


def hold(helper: Helper, step: str) -> list[Held]:
    """Hold ``helper``'s messages of ``step`` to both of its peers."""
    held = []
    for peer in Peer:
        link = Held(helper.peers[peer], step)
        helper.peers[peer] = link
        held.append(link)
    return held


def with_settings(configs: list[HelperConfig], party: int, **changes: object) -> list[HelperConfig]:
    """The configs with helper ``party``'s changed (e.g. a smaller budget)."""
    return [replace(c, **changes) if i == party else c for i, c in enumerate(configs)]


def fresh(configs: list[HelperConfig], directory: Path) -> list[HelperConfig]:
    """The configs with empty data directories under ``directory`` (own ledgers and results)."""
    return [replace(c, data_dir=directory / f"helper{c.index}") for c in configs]


def all_final(states: Iterable[State]) -> bool:
    return all(s.final for s in states)
