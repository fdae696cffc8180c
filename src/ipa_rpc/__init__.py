"""The wire contract shared by ``ipa_client`` and ``ipa_helper``; the core ``ipa`` never imports it.

``v1`` holds the modules generated from proto/ipa/v1 (see proto/generate.py).
The limits below are part of the contract: both sides stream in chunks of
``CHUNK_BYTES`` and accept messages up to ``MAX_MESSAGE_BYTES``.
``COLLECTOR_METADATA`` is the metadata key naming the report collector on an
``--insecure`` development network (with TLS, its client certificate does).
"""

CHUNK_BYTES = 4 << 20
"""4 MiB: the fewer chunks, the fewer protobuf messages a helper frees, and protobuf's Python runtime
(upb) calls ``malloc_trim(0)`` after every 10,000 frees, which hands the helper's freed heap back to
the kernel to be zeroed again (``ipa_helper.allocator``; at 10^6 events, malicious, 1 MiB chunks
about doubled the page faults of the peak memory, ``docs/malicious.md`` §9.8)."""
MAX_MESSAGE_BYTES = 8 << 20  # a chunk plus its header, with room to spare
MESSAGE_LIMITS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
COLLECTOR_METADATA = "ipa-collector"

# Metadata of an Upload call: the helper checks them before it reads any chunk.
QUERY_ID_KEY = "ipa-query-id"
TOKEN_KEY = "ipa-token"  # the collector's token for this helper, hex
PARAMS_DIGEST_KEY = "ipa-params-digest"  # ipa.query.params_digest of the query's parameters, hex
