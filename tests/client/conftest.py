"""A three-helper network (keys in memory) for the client tests."""

import pytest

from ipa.crypto.keys import KeyRegistry
from ipa.network import Network


@pytest.fixture(scope="module")
def registries():
    return [KeyRegistry.generate(h) for h in range(3)]


@pytest.fixture(scope="module")
def network(registries):
    return Network.from_registries(registries)
