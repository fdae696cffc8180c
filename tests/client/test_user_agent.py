"""The user agent: cached answers, an indistinguishable fallback key, fresh shares after clearing a site."""

import numpy as np
import pytest

from ipa.crypto.binding import Binding, Purpose, info
from ipa.crypto.hpke import open_sealed
from ipa.errors import InputError
from ipa.reports.layout import FORMAT_VERSION
from ipa.reports.match_key import EncryptedMatchKey
from ipa_client.user_agent import UserAgent

RC, SITE, EPOCH = "collector.example", "shop.example", 3


def key_of(encrypted: EncryptedMatchKey, registries) -> int:
    """Open all three parts (as the three helpers together would) and XOR the shares."""
    components = []
    for h, part in enumerate(encrypted.parts):
        bound = info(Purpose.MATCH_KEY, FORMAT_VERSION, encrypted.suite, part.key_id, h, encrypted.binding)
        left, _ = np.frombuffer(
            open_sealed(registries[h].private_key(part.key_id), part.sealed, bound), "<u8"
        )
        components.append(int(left))
    return components[0] ^ components[1] ^ components[2]


def test_from_network_file(tmp_path, network):
    network.save(tmp_path / "network.toml")
    assert UserAgent.from_network(tmp_path / "network.toml").network == network


def test_set_key_is_what_the_helpers_reconstruct(network, registries):
    agent = UserAgent(network)
    agent.set_match_key("provider.example", 2**64 - 1)
    encrypted = agent.get_encrypted_match_key(RC, SITE, EPOCH, match_key_provider="provider.example")
    assert encrypted.binding == Binding(SITE, RC, EPOCH, "provider.example")
    assert key_of(encrypted, registries) == 2**64 - 1


def test_answers_are_cached_per_collector_site_epoch_and_provider(network, registries):
    agent = UserAgent(network)
    agent.set_match_key("provider.example", 42)
    first = agent.get_encrypted_match_key(RC, SITE, EPOCH, match_key_provider="provider.example")
    assert agent.get_encrypted_match_key(RC, SITE, EPOCH, match_key_provider="provider.example") is first
    others = [
        agent.get_encrypted_match_key("rival.example", SITE, EPOCH, match_key_provider="provider.example"),
        agent.get_encrypted_match_key(RC, "news.example", EPOCH, match_key_provider="provider.example"),
        agent.get_encrypted_match_key(RC, SITE, EPOCH + 1, match_key_provider="provider.example"),
    ]
    sealed = {first.parts[0].sealed} | {o.parts[0].sealed for o in others}
    assert len(sealed) == 4  # each context gets its own sharing and encryption
    assert {key_of(o, registries) for o in [first, *others]} == {42}


def test_fallback_key_is_random_kept_and_looks_like_a_set_one(network, registries):
    agent = UserAgent(network)
    fallback = agent.get_encrypted_match_key(RC, SITE, EPOCH, match_key_provider="unset.example")
    same_key = agent.get_encrypted_match_key(RC, "news.example", EPOCH, match_key_provider="unset.example")
    assert key_of(fallback, registries) == key_of(same_key, registries)  # stored, not redrawn per site
    own = agent.get_encrypted_match_key(RC, SITE, EPOCH)  # the user agent's own key ('' provider)
    other_agent = UserAgent(network)
    assert key_of(own, registries) != key_of(other_agent.get_encrypted_match_key(RC, SITE, EPOCH), registries)
    agent.set_match_key("provider.example", 7)
    chosen = agent.get_encrypted_match_key(RC, SITE, EPOCH, match_key_provider="provider.example")
    # Same form and sizes whether or not a key was set: nothing tells a collector which it got.
    assert fallback.suite == chosen.suite
    assert [(p.helper, p.key_id, len(p.sealed)) for p in fallback.parts] == [
        (p.helper, p.key_id, len(p.sealed)) for p in chosen.parts
    ]
    assert len(fallback.to_bytes()) - len("unset.example") == len(chosen.to_bytes()) - len("provider.example")


def test_clearing_a_site_makes_fresh_shares_of_the_same_key(network, registries):
    agent = UserAgent(network)
    agent.set_match_key("provider.example", 99)
    before = agent.get_encrypted_match_key(RC, SITE, EPOCH, match_key_provider="provider.example")
    kept = agent.get_encrypted_match_key(RC, "news.example", EPOCH, match_key_provider="provider.example")
    agent.clear_site_data(SITE)
    after = agent.get_encrypted_match_key(RC, SITE, EPOCH, match_key_provider="provider.example")
    assert after is not before and all(
        a.sealed != b.sealed for a, b in zip(after.parts, before.parts, strict=True)
    )
    assert key_of(after, registries) == key_of(before, registries) == 99
    assert (
        agent.get_encrypted_match_key(RC, "news.example", EPOCH, match_key_provider="provider.example")
        is kept
    )


def test_arguments_are_checked(network):
    agent = UserAgent(network)
    with pytest.raises(InputError, match="provider must be a non-empty name"):
        agent.set_match_key("", 1)
    with pytest.raises(InputError, match=r"key must be an integer in \[0, 2\*\*64\)") as caught:
        agent.set_match_key("provider.example", 2**64 + 12345)
    assert "12345" not in str(caught.value)  # a match key never appears in a message
    with pytest.raises(InputError, match="site must be 1 to 255"):
        agent.get_encrypted_match_key(RC, "", EPOCH)
    with pytest.raises(InputError, match="epoch must be in"):
        agent.get_encrypted_match_key(RC, SITE, 70_000)
    with pytest.raises(InputError, match="network must be"):
        UserAgent("network.toml")
    assert "99" not in repr(agent)
