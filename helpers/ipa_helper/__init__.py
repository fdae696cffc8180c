"""The IPA helper server: gRPC services and the gRPC transport for ``ipa.mpc``.

The servers arrive with the helpers issue; this package exists now so that the
layout (``ipa_client -> ipa <- ipa_helper``) is fixed from the start.
"""
