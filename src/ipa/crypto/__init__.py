"""HPKE sealing of shares, key ids and the helpers' key registries.

- :mod:`ipa.crypto.hpke`: the suites, raw key types, ``seal`` / ``open_sealed``.
- :mod:`ipa.crypto.binding`: the ``info`` every sealed share is bound to.
- :mod:`ipa.crypto.keys`: a helper's current and previous keys; public keys.
- :mod:`ipa.crypto.opener`: opening a batch (deduplicated, on every core).
"""

from ipa.crypto.binding import Binding, Purpose
from ipa.crypto.hpke import PrivateKey, PublicKey, Suite, open_sealed, seal
from ipa.crypto.keys import HelperPublicKey, KeyRegistry
from ipa.crypto.opener import open_many

__all__ = [
    "Binding",
    "HelperPublicKey",
    "KeyRegistry",
    "PrivateKey",
    "PublicKey",
    "Purpose",
    "Suite",
    "open_many",
    "open_sealed",
    "seal",
]
