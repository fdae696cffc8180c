"""The wire contract shared by ``ipa_client`` and ``ipa_helper``; the core ``ipa`` never imports it.

``v1`` holds the modules generated from proto/ipa/v1 (see proto/generate.py).
The limits below are part of the contract: both sides stream in chunks of
``CHUNK_BYTES`` and accept messages up to ``MAX_MESSAGE_BYTES``.
``COLLECTOR_METADATA`` is the metadata key naming the report collector on an
``--insecure`` development network (with TLS, its client certificate does).
"""

CHUNK_BYTES = 1 << 20
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
