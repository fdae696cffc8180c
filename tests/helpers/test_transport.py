"""Protocols run unchanged over the helpers' real (TLS) peer connections."""

import numpy as np
import pytest
from google.protobuf import message_factory
from grpc_world import InProcessNetwork

from ipa.errors import TransportError
from ipa.mpc.channel import Peer
from ipa.mpc.multiply import multiply
from ipa.mpc.sharing import reconstruct, share_arithmetic, share_boolean
from ipa.mpc.sort import sort
from ipa.mpc.step import Steps
from ipa_helper.transport import (
    CHUNK_BYTES,
    SEND_METHOD,
    decode_message,
    encode_message,
    peer_method_handlers,
)
from ipa_rpc.v1 import peer_pb2, peer_pb2_grpc


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    world = InProcessNetwork(tmp_path_factory.mktemp("net"), timeout_seconds=20)
    yield world
    world.close()


def test_multiply_over_grpc(network):
    x = np.arange(1000, dtype=np.uint64) * np.uint64(2**40 + 3)
    shares = list(zip(share_arithmetic(x), share_arithmetic(x + np.uint64(1)), strict=True))
    steps = Steps("test.transport", "m")
    outputs, channels = network.run(
        lambda ctx, xy: multiply(ctx.enter(steps).narrow("m"), *xy), shares, "mul"
    )
    assert np.array_equal(reconstruct(outputs), x * (x + np.uint64(1)))
    assert channels[0].stats.under("root/m").total_bytes == 8000
    assert channels[0].stats.under("root/m").rounds == 1  # message depths travel over gRPC too


def test_sort_over_grpc_with_multi_chunk_messages(network):
    n = 3 * CHUNK_BYTES // 8  # 24 MiB of keys: every message spans several chunks
    keys = np.random.default_rng(1).integers(0, 2**20, n, dtype=np.uint64)
    payload = np.arange(n, dtype=np.uint64)
    shares = list(zip(share_boolean(keys, 20), share_arithmetic(payload), strict=True))
    outputs, _ = network.run(lambda ctx, kp: sort(ctx, kp[0], [kp[1]], digit_bits=4), shares, "sort")
    assert np.array_equal(reconstruct([o[0] for o in outputs]), np.argsort(keys, kind="stable"))


def test_abort_wakes_a_waiting_receiver(network):
    def wait(ctx, _):
        if ctx.party == 0:
            for running in network.helpers[1:]:
                running.helper.mailbox.abort("aborted", "H1 gave up")
            raise RuntimeError("H1 stops")
        ctx.receive(Peer.PREV, np.zeros(1, np.uint64))

    with pytest.raises((RuntimeError, TransportError)):
        network.run(wait, [None] * 3, "aborted")
    for running in network.helpers[1:]:
        with pytest.raises(TransportError, match="H1 gave up"):
            running.helper.mailbox.take("aborted", 0, "x", 1.0)


def _chunk(raw: bytes) -> peer_pb2.ShareChunk:
    return peer_pb2.ShareChunk.FromString(raw)


def test_message_encoding_round_trip():
    arrays = [np.arange(5, dtype=np.uint32), np.zeros((2, 3), np.uint8)]
    query, step, sender, back = decode_message(iter(encode_message("q", "s/t", 2, arrays)))
    assert (query, step, sender) == ("q", "s/t", 2)
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(arrays, back, strict=True))


def test_chunks_are_share_chunk_messages_on_the_wire():
    """The hand-written data fields are protobuf's encoding: protobuf parses every chunk, and a
    message protobuf encodes (any field order) decodes the same."""
    arrays = [np.arange(CHUNK_BYTES // 4, dtype=np.uint64), np.arange(7, dtype=np.uint16)]
    chunks = list(encode_message("q", "s", 1, arrays))
    parsed = [_chunk(raw) for raw in chunks]
    assert (parsed[0].query_id, parsed[0].step, parsed[0].sender, len(parsed[0].arrays)) == ("q", "s", 1, 2)
    joined = b"".join(p.data for p in parsed)
    assert joined == b"".join(a.tobytes() for a in arrays)
    assert [len(p.data) for p in parsed[:-1]] == [CHUNK_BYTES] * (len(parsed) - 1)
    by_protobuf = [p.SerializeToString() for p in parsed]
    by_protobuf[1] = peer_pb2.ShareChunk(data=parsed[1].data, step="ignored").SerializeToString()
    back = decode_message(iter(by_protobuf))[3]
    assert all(np.array_equal(a, b) for a, b in zip(arrays, back, strict=True))


def test_an_empty_message_has_one_chunk_and_round_trips():
    chunks = list(encode_message("q", "s", 0, [np.zeros(0, np.uint64)]))
    assert len(chunks) == 1 and _chunk(chunks[0]).data == b""
    assert decode_message(iter(chunks))[3][0].shape == (0,)


def test_truncated_message_is_refused():
    chunks = list(encode_message("q", "s", 1, [np.arange(10, dtype=np.uint64)]))
    first = _chunk(chunks[0])
    first.data = first.data[:-1]
    with pytest.raises(TransportError, match="malformed"):
        decode_message(iter([first.SerializeToString()]))


@pytest.mark.parametrize(
    "garbage",
    [b"\x2a\xff", b"\x2a\x05abc", b"\x2a\x01ab", b"\x2a" + b"\xff" * 12, b"\x08", b"\xff\xff\xff"],
    ids=["cut-length", "short-data", "long-data", "endless-varint", "cut-field", "bad-key"],
)
def test_a_chunk_that_is_not_a_share_chunk_is_refused(garbage):
    chunks = list(encode_message("q", "s", 1, [np.arange(CHUNK_BYTES // 4, dtype=np.uint64)]))
    for at in (0, 1):
        cut = [*chunks[:at], garbage, *chunks[at + 1 :]]
        with pytest.raises(TransportError, match="malformed"):
            decode_message(iter(cut))


def test_a_non_unsigned_dtype_is_refused():
    chunks = list(encode_message("q", "s", 1, [np.arange(3, dtype=np.float64)]))
    with pytest.raises(TransportError, match="malformed"):
        decode_message(iter(chunks))


def test_mixed_layouts_over_many_chunks_round_trip_read_only():
    arrays = [
        np.arange(3, dtype=np.uint8),
        np.arange(CHUNK_BYTES // 4, dtype=np.uint64),
        np.zeros(0, np.uint16),
    ]
    chunks = list(encode_message("q", "s", 0, arrays))
    assert len(chunks) > 2  # the uint64 array spans chunks, at an odd offset
    back = decode_message(iter(chunks))[3]
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(arrays, back, strict=True))
    assert not any(b.flags.writeable for b in back)


def test_a_message_longer_or_shorter_than_its_header_declares_is_refused():
    chunks = list(encode_message("q", "s", 1, [np.arange(10, dtype=np.uint64)]))
    chunks.append(peer_pb2.ShareChunk(data=b"\0").SerializeToString())
    with pytest.raises(TransportError, match="malformed"):
        decode_message(iter(chunks))
    first = _chunk(next(encode_message("q", "s", 1, [np.arange(10, dtype=np.uint64)])))
    first.arrays[0].shape[0] = 11
    with pytest.raises(TransportError, match="malformed"):
        decode_message(iter([first.SerializeToString()]))


def test_a_header_declaring_an_absurd_size_is_refused_before_anything_is_reserved():
    first = _chunk(next(encode_message("q", "s", 1, [np.arange(1, dtype=np.uint64)])))
    first.arrays[0].shape[0] = 1 << 60
    with pytest.raises(TransportError, match="malformed"):
        decode_message(iter([first.SerializeToString()]))


def test_the_peer_service_is_served_as_the_proto_declares_it():
    """Every method of ``Peer`` in the proto, with its streaming and message types; only Send's
    request is left as bytes (``decode_message`` parses it)."""
    service = peer_pb2.DESCRIPTOR.services_by_name["Peer"]
    handlers = peer_method_handlers(peer_pb2_grpc.PeerServicer())
    assert set(handlers) == {m.name for m in service.methods}
    assert f"/{service.full_name}/Send" == SEND_METHOD
    for method in service.methods:
        handler = handlers[method.name]
        assert (handler.request_streaming, handler.response_streaming) == (
            method.client_streaming,
            method.server_streaming,
        )
        response = message_factory.GetMessageClass(method.output_type)
        request = message_factory.GetMessageClass(method.input_type)
        assert handler.response_serializer == response.SerializeToString
        expected = None if method.name == "Send" else request.FromString
        assert handler.request_deserializer == expected
