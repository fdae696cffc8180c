"""The user agent's half of IPA: a write-only match key, handed out only encrypted.

``set_match_key(provider, key)`` stores a 64-bit match key for a match-key
provider; nothing can read it back. ``get_encrypted_match_key(report_collector,
site, epoch)`` returns the key XOR-split into three shares and sealed to the
three helpers (:func:`ipa.reports.match_key.encrypt_match_key`), bound to the report
collector, the site, the match-key provider and the epoch.

- **Always an answer.** If the provider never set a key, the user agent draws
  a random one (CSPRNG) and keeps it: the result has the same form and
  distribution, so a report collector cannot tell whether a key was set.
  ``match_key_provider=""`` (the default) names the user agent's own random
  key, the setting the IPA proposal starts with.
- **Same question, same answer.** Results are cached per (report collector,
  site, epoch, provider): asking again within the epoch returns the
  identical ciphertexts, so the answer reveals nothing new (and helpers open
  each once per batch).
- **Clearing a site's storage** (:meth:`UserAgent.clear_site_data`) forgets
  that site's cached results: the next answer is a fresh sharing and fresh
  encryption of the same key, unlinkable to the earlier one.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from os import PathLike

from ipa.crypto.binding import Binding, check_name
from ipa.errors import InputError
from ipa.network import Network
from ipa.reports.match_key import MATCH_KEY_BITS, EncryptedMatchKey, check_match_key, encrypt_match_key

__all__ = ["UserAgent"]


class UserAgent:
    """One user agent's match keys and cached encrypted match keys, for one helper network."""

    def __init__(self, network: Network, *, clock: Callable[[], float] = time.time) -> None:
        if not isinstance(network, Network):
            raise InputError(f"network must be an ipa.network.Network, got {type(network).__name__}")
        self._network = network
        self._clock = clock
        self._schedule = network.epochs
        self._keys: dict[str, list[tuple[int, int]]] = {}  # provider: [(from epoch, key), ...], in order
        self._cache: dict[tuple[str, str, int, str], EncryptedMatchKey] = {}
        self._fallback: dict[str, int] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_network(cls, path: str | PathLike[str], *, clock: Callable[[], float] = time.time) -> UserAgent:
        """A user agent for the network described by a ``network.toml`` file."""
        return cls(Network.load(path), clock=clock)

    @classmethod
    def provisioned(
        cls, network: Network, provider: str, key: int, *, clock: Callable[[], float] = time.time
    ) -> UserAgent:
        """A user agent whose ``provider`` set ``key`` before epoch 0 (simulations and tests)."""
        agent = cls(network, clock=clock)
        agent._set(provider, key, 0)
        return agent

    @property
    def network(self) -> Network:
        return self._network

    @property
    def epoch(self) -> int:
        """The current epoch, from this user agent's clock and the network's schedule."""
        return self._schedule.epoch_at(self._clock())

    def set_match_key(self, provider: str, key: int) -> None:
        """Store ``key`` (a 64-bit integer) as ``provider``'s match key from the next epoch on.

        It can never be read back. Until the next epoch the key in effect
        stays what it was (a key set earlier, or the random fallback).
        """
        self._set(provider, key, self.epoch + 1)

    def _set(self, provider: str, key: int, from_epoch: int) -> None:
        if provider == "":
            raise InputError("provider must be a non-empty name; '' is the user agent's own key")
        check_name("provider", provider)
        key = check_match_key(key, "key")
        with self._lock:
            history = [(e, k) for e, k in self._keys.get(provider, []) if e < from_epoch]
            self._keys[provider] = [*history, (from_epoch, key)]

    def get_encrypted_match_key(
        self, report_collector: str, site: str, *, match_key_provider: str = ""
    ) -> EncryptedMatchKey:
        """The match key of ``match_key_provider`` in the current epoch, shared and sealed (cached).

        ``site`` is where the event happens; the epoch comes from this user agent's clock.
        """
        epoch = self.epoch
        binding = Binding(site, report_collector, epoch, match_key_provider)
        cache_key = (report_collector, site, epoch, match_key_provider)
        with self._lock:
            cached = self._cache.get(cache_key)
            if cached is not None:
                return cached
            key = self._key_in(match_key_provider, epoch)
            result = encrypt_match_key(key, self._network.public_keys, binding)
            self._cache[cache_key] = result
            return result

    def _key_in(self, provider: str, epoch: int) -> int:
        """The provider's key in effect in ``epoch``: the latest set before it, else the random fallback."""
        in_effect = [k for e, k in self._keys.get(provider, []) if e <= epoch]
        if in_effect:
            return in_effect[-1]
        if provider not in self._fallback:  # drawn once (CSPRNG) and kept: indistinguishable from a set key
            self._fallback[provider] = secrets.randbits(MATCH_KEY_BITS)
        return self._fallback[provider]

    def clear_site_data(self, site: str) -> None:
        """Forget everything cached for ``site``: its next answers are fresh shares and ciphertexts."""
        with self._lock:
            for cache_key in [k for k in self._cache if k[1] == site]:
                del self._cache[cache_key]

    def __repr__(self) -> str:
        return f"UserAgent(providers={len(self._keys)}, cached={len(self._cache)})"
