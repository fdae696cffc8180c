"""Interoperable Private Attribution: the core library.

Sub-packages and modules, lowest layer first:

- ``ipa.mpc``: three-party replicated secret sharing and the protocols built on it.
- ``ipa.events``: the event CSV format shared by every tool.
- ``ipa.reference``: the in-the-clear attribution that defines the exact answer.
- ``ipa.synthetic``: generator of realistic synthetic event sets.

The core never imports gRPC, ``ipa_helper`` or ``ipa_client``.
"""

__version__ = "0.1.0"
