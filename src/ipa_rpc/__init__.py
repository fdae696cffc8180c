"""Generated gRPC/protobuf modules of the wire contract in proto/ipa/v1 (see proto/generate.py).

Shared by ``ipa_client`` and ``ipa_helper``; the core ``ipa`` never imports it.
"""
