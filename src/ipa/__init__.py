"""Interoperable Private Attribution: the core library.

Its eleven parts, lowest layer first (each imports only from those before it;
``tests/test_layers.py`` holds the exact order and checks it):

- ``ipa.errors``: the exception hierarchy (``IpaError`` and its kinds).
- ``ipa.mpc``: three-party replicated secret sharing and the protocols built
  on it, from shares and PRSS up to shuffle and sort.
- ``ipa.events``: the event columns and CSV format shared by every tool.
- ``ipa.synthetic``: generator of realistic synthetic event sets.
- ``ipa.crypto``: HPKE sealing, the ``info`` binding, key registries, opening
  in parallel.
- ``ipa.certs``: the helpers' self-signed TLS identities.
- ``ipa.network``: the helper network file and key files.
- ``ipa.attribution``: the IPA query in MPC, from shared rows to result shares.
- ``ipa.reference``: the in-the-clear attribution that defines the exact answer.
- ``ipa.dp``: DP calibration, sampling, and noise added in shares.
- ``ipa.reports``: report formats by role (user agent, report collector, helper).

The core never imports gRPC, ``ipa_rpc``, ``ipa_helper`` or ``ipa_client``.
"""

__version__ = "0.1.0"
