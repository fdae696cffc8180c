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
WEEK = 7 * 86_400


class Clock:
    """A user agent's clock that a test moves: starts in the middle of epoch EPOCH."""

    def __init__(self) -> None:
        self.now = EPOCH * WEEK + WEEK / 2

    def __call__(self) -> float:
        return self.now

    def next_epoch(self) -> None:
        self.now += WEEK


def agent_with(network, provider: str, key: int) -> tuple[UserAgent, Clock]:
    """A user agent whose provider set ``key`` an epoch ago (in effect now, in epoch EPOCH)."""
    clock = Clock()
    clock.now -= WEEK
    agent = UserAgent(network, clock=clock)
    agent.set_match_key(provider, key)
    clock.next_epoch()
    return agent, clock


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
    agent, _ = agent_with(network, "provider.example", 2**64 - 1)
    encrypted = agent.get_encrypted_match_key(RC, SITE, match_key_provider="provider.example")
    assert encrypted.binding == Binding(SITE, RC, EPOCH, "provider.example")
    assert key_of(encrypted, registries) == 2**64 - 1


def test_answers_are_cached_per_collector_site_epoch_and_provider(network, registries):
    agent, clock = agent_with(network, "provider.example", 42)
    first = agent.get_encrypted_match_key(RC, SITE, match_key_provider="provider.example")
    assert agent.get_encrypted_match_key(RC, SITE, match_key_provider="provider.example") is first
    others = [
        agent.get_encrypted_match_key("rival.example", SITE, match_key_provider="provider.example"),
        agent.get_encrypted_match_key(RC, "news.example", match_key_provider="provider.example"),
    ]
    clock.next_epoch()
    others.append(agent.get_encrypted_match_key(RC, SITE, match_key_provider="provider.example"))
    assert others[-1].binding.epoch == EPOCH + 1
    sealed = {first.parts[0].sealed} | {o.parts[0].sealed for o in others}
    assert len(sealed) == 4  # each context gets its own sharing and encryption
    assert {key_of(o, registries) for o in [first, *others]} == {42}


def test_fallback_key_is_random_kept_and_looks_like_a_set_one(network, registries):
    agent, _ = agent_with(network, "provider.example", 7)
    fallback = agent.get_encrypted_match_key(RC, SITE, match_key_provider="unset.example")
    same_key = agent.get_encrypted_match_key(RC, "news.example", match_key_provider="unset.example")
    assert key_of(fallback, registries) == key_of(same_key, registries)  # stored, not redrawn per site
    own = agent.get_encrypted_match_key(RC, SITE)  # the user agent's own key ('' provider)
    other_agent = UserAgent(network, clock=Clock())
    assert key_of(own, registries) != key_of(other_agent.get_encrypted_match_key(RC, SITE), registries)
    chosen = agent.get_encrypted_match_key(RC, SITE, match_key_provider="provider.example")
    # Same form and sizes whether or not a key was set: nothing tells a collector which it got.
    assert fallback.suite == chosen.suite
    assert [(p.helper, p.key_id, len(p.sealed)) for p in fallback.parts] == [
        (p.helper, p.key_id, len(p.sealed)) for p in chosen.parts
    ]
    assert len(fallback.to_bytes()) - len("unset.example") == len(chosen.to_bytes()) - len("provider.example")


def test_clearing_a_site_makes_fresh_shares_of_the_same_key(network, registries):
    agent, _ = agent_with(network, "provider.example", 99)
    before = agent.get_encrypted_match_key(RC, SITE, match_key_provider="provider.example")
    kept = agent.get_encrypted_match_key(RC, "news.example", match_key_provider="provider.example")
    agent.clear_site_data(SITE)
    after = agent.get_encrypted_match_key(RC, SITE, match_key_provider="provider.example")
    assert after is not before and all(
        a.sealed != b.sealed for a, b in zip(after.parts, before.parts, strict=True)
    )
    assert key_of(after, registries) == key_of(before, registries) == 99
    assert agent.get_encrypted_match_key(RC, "news.example", match_key_provider="provider.example") is kept


def test_arguments_are_checked(network):
    clock = Clock()
    agent = UserAgent(network, clock=clock)
    with pytest.raises(InputError, match="provider must be a non-empty name"):
        agent.set_match_key("", 1)
    with pytest.raises(InputError, match=r"key must be an integer in \[0, 2\*\*64\)") as caught:
        agent.set_match_key("provider.example", 2**64 + 12345)
    assert "12345" not in str(caught.value)  # a match key never appears in a message
    with pytest.raises(InputError, match="site must be 1 to 255"):
        agent.get_encrypted_match_key(RC, "")
    clock.now = 70_000 * WEEK  # a clock past the last epoch
    with pytest.raises(InputError, match="after the last epoch"):
        agent.get_encrypted_match_key(RC, SITE)
    with pytest.raises(InputError, match="network must be"):
        UserAgent("network.toml")
    assert "99" not in repr(agent)


def test_a_new_key_applies_from_the_next_epoch(network, registries):
    """The epoch comes from the user agent's clock; set_match_key changes nothing before the next one."""
    clock = Clock()
    agent = UserAgent(network, clock=clock)
    before = agent.get_encrypted_match_key(RC, SITE, match_key_provider="provider.example")
    agent.set_match_key("provider.example", 5)
    during = agent.get_encrypted_match_key(RC, "news.example", match_key_provider="provider.example")
    assert before.binding.epoch == during.binding.epoch == EPOCH
    assert key_of(during, registries) == key_of(before, registries) != 5  # still the random fallback
    clock.next_epoch()
    after = agent.get_encrypted_match_key(RC, SITE, match_key_provider="provider.example")
    assert after.binding.epoch == EPOCH + 1 and key_of(after, registries) == 5
    agent.set_match_key("provider.example", 6)  # replaced from EPOCH + 2 on; EPOCH + 1 keeps 5
    assert (
        key_of(
            agent.get_encrypted_match_key(RC, "x.example", match_key_provider="provider.example"), registries
        )
        == 5
    )
    clock.next_epoch()
    assert (
        key_of(agent.get_encrypted_match_key(RC, SITE, match_key_provider="provider.example"), registries)
        == 6
    )


def test_the_epoch_schedule_is_the_networks(network):
    from ipa.network import Network

    daily = Network(network.helpers, {"epochs": {"length_seconds": 86_400, "origin": 1_000}})
    agent = UserAgent(daily, clock=lambda: 1_000 + 3 * 86_400 + 5)
    assert agent.epoch == 3
    assert UserAgent(network, clock=lambda: 2 * WEEK).epoch == 2  # default: weeks from Unix time 0
