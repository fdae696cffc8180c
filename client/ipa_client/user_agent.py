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
  site, epoch, provider): asking again returns the identical ciphertexts, so
  the answer reveals nothing new (and helpers open each once per batch).
- **Clearing a site's storage** (:meth:`UserAgent.clear_site_data`) forgets
  that site's cached results: the next answer is a fresh sharing and fresh
  encryption of the same key, unlinkable to the earlier one.

NB: the IPA proposal applies a ``set_match_key`` only from the next epoch;
here a new key is used for every (collector, site, epoch) not yet asked for.
"""

from __future__ import annotations

import secrets
import threading
from os import PathLike

from ipa.crypto.binding import Binding, check_name
from ipa.errors import InputError
from ipa.network import Network
from ipa.reports.match_key import MATCH_KEY_BITS, EncryptedMatchKey, check_match_key, encrypt_match_key

__all__ = ["UserAgent"]


class UserAgent:
    """One user agent's match keys and cached encrypted match keys, for one helper network."""

    def __init__(self, network: Network) -> None:
        if not isinstance(network, Network):
            raise InputError(f"network must be an ipa.network.Network, got {type(network).__name__}")
        self._network = network
        self._keys: dict[str, int] = {}
        self._cache: dict[tuple[str, str, int, str], EncryptedMatchKey] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_network(cls, path: str | PathLike[str]) -> UserAgent:
        """A user agent for the network described by a ``network.toml`` file."""
        return cls(Network.load(path))

    @property
    def network(self) -> Network:
        return self._network

    def set_match_key(self, provider: str, key: int) -> None:
        """Store ``key`` (a 64-bit integer) as ``provider``'s match key; it can never be read back."""
        if provider == "":
            raise InputError("provider must be a non-empty name; '' is the user agent's own key")
        check_name("provider", provider)
        key = check_match_key(key, "key")
        with self._lock:
            self._keys[provider] = key

    def get_encrypted_match_key(
        self, report_collector: str, site: str, epoch: int, *, match_key_provider: str = ""
    ) -> EncryptedMatchKey:
        """The match key of ``match_key_provider``, shared and sealed to the helpers (cached)."""
        binding = Binding(site, report_collector, epoch, match_key_provider)
        cache_key = (report_collector, site, int(epoch), match_key_provider)
        with self._lock:
            cached = self._cache.get(cache_key)
            if cached is not None:
                return cached
            if match_key_provider not in self._keys:
                self._keys[match_key_provider] = secrets.randbits(MATCH_KEY_BITS)  # the fallback
            key = self._keys[match_key_provider]
            result = encrypt_match_key(key, self._network.public_keys, binding)
            self._cache[cache_key] = result
            return result

    def clear_site_data(self, site: str) -> None:
        """Forget everything cached for ``site``: its next answers are fresh shares and ciphertexts."""
        with self._lock:
            for cache_key in [k for k in self._cache if k[1] == site]:
                del self._cache[cache_key]

    def __repr__(self) -> str:
        return f"UserAgent(providers={len(self._keys)}, cached={len(self._cache)})"
