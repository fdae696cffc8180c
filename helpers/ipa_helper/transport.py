"""The gRPC implementation of the peer interface (:class:`~ipa_helper.peers.PeerLink`).

:class:`GrpcPeer` calls a neighbour's ``Peer`` service: ``Prepare``, ``Abort``,
and ``Send`` for MPC messages. A message (the arrays one step sends to one neighbour) travels as one
client-streaming ``Peer.Send`` call: the first chunk names the query, step,
sender and array layouts, and the bytes follow in chunks of :data:`CHUNK_BYTES` (4 MiB).
``Send`` passes each chunk as its wire bytes, not through protobuf's message
objects (:func:`encode_message`, :func:`decode_message`): the chunks are still
``ShareChunk`` messages, but their data is copied once on each side instead
of three times, and only the first chunk of a message (its header) becomes a
protobuf message object, whose runtime trims the heap after every 10,000
frees (``ipa_helper.allocator``): at 10^6 events, malicious, 0.7 million
page faults per helper instead of 0.9–1.2 (``docs/malicious.md`` §9.8).
The receiving helper's ``Peer`` servicer (:mod:`ipa_helper.services`) stores it in its
:class:`~ipa_helper.mailbox.Mailbox`; :class:`~ipa_helper.peers.PeerChannel` takes it
from there. Every call has a deadline; a late or missing message is a
TransportError, so a stalled or dead peer fails the query instead of hanging it.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from ipa.certs import common_name
from ipa.errors import TransportError
from ipa.query import QuerySpec
from ipa_helper.limits import LimitError
from ipa_helper.params import spec_to_proto
from ipa_helper.peers import PeerLink, RefusedError, UnreachableError
from ipa_rpc import CHUNK_BYTES
from ipa_rpc.reach import unreachable_reason
from ipa_rpc.v1 import peer_pb2, peer_pb2_grpc

__all__ = [
    "CHUNK_BYTES",
    "SEND_METHOD",
    "GrpcPeer",
    "add_peer_servicer",
    "caller_index",
    "decode_message",
    "encode_message",
    "peer_channel",
    "peer_method_handlers",
    "send_call",
]

SEND_METHOD = "/ipa.v1.Peer/Send"
_DATA_TAG = b"\x2a"
"""``ShareChunk.data``'s key on the wire: field 5, length-delimited (``5 << 3 | 2``)."""


def peer_channel(
    address: str,
    peer: int,
    options: Sequence[tuple[str, Any]],
    tls: tuple[bytes, bytes, bytes] | None,
) -> grpc.Channel:
    """A channel to the ``Peer`` service of helper ``peer`` (1-based) or of one of its workers.

    ``tls`` is (this helper's key, its certificate, the peer's certificate):
    mutual TLS with the peer's certificate the only root; None (``--insecure``)
    is plaintext.
    """
    if tls is None:
        return grpc.insecure_channel(address, options=options)
    key, cert, peer_cert = tls
    credentials = grpc.ssl_channel_credentials(
        root_certificates=peer_cert, private_key=key, certificate_chain=cert
    )
    return grpc.secure_channel(
        address, credentials, options=[*options, ("grpc.ssl_target_name_override", common_name(peer))]
    )


def caller_index(context: grpc.ServicerContext, pinned: Mapping[bytes, int] | None) -> int | None:
    """The calling peer's 0-based party index, by the certificate it presented (None without TLS).

    ``pinned`` maps each peer's certificate (stripped PEM) to its index; a call
    with any other certificate is aborted (UNAUTHENTICATED).
    """
    if pinned is None:
        return None
    # grpc gives a list of values per property (typeshed's stub says bytes)
    certs = cast(list[bytes], context.auth_context().get("x509_pem_cert", [b""]))
    presented = certs[0].strip()
    if presented not in pinned:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "not a configured peer's certificate")
    return pinned[presented]


def encode_message(query_id: str, step: str, sender: int, arrays: list[np.ndarray]) -> Iterator[bytes]:
    """The chunks of one message, each the wire bytes of a ``ShareChunk``; the first carries the header.

    A chunk is its header fields (the first only), then its data field, written
    here: protobuf's encoding of a message is the concatenation of its fields'.
    The data are cut from each array's own memory and copied once, into the
    chunk; protobuf's message objects would copy them twice more (into the
    message, then onto the wire).
    """
    headers = [peer_pb2.ArrayHeader(dtype=a.dtype.str, shape=a.shape) for a in arrays]
    views = [np.ascontiguousarray(a).reshape(-1).view(np.uint8).data for a in arrays]
    pieces = (
        view[start : start + CHUNK_BYTES] for view in views for start in range(0, len(view), CHUNK_BYTES)
    )
    header = peer_pb2.ShareChunk(query_id=query_id, step=step, sender=sender, arrays=headers)
    yield b"".join((header.SerializeToString(), *_data_field(next(pieces, b""))))
    for piece in pieces:
        yield b"".join(_data_field(piece))


def _data_field(piece: memoryview | bytes) -> tuple[bytes, bytes, memoryview | bytes]:
    """The parts of ``data = piece`` on the wire (nothing for empty data, protobuf's default)."""
    if not len(piece):
        return b"", b"", b""
    return _DATA_TAG, _varint(len(piece)), piece


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _data(raw: bytes) -> memoryview | bytes:
    """A chunk's data: a view of ``raw`` when the chunk is the data field alone (as
    :func:`encode_message` writes it), else protobuf's parse of any other encoding."""
    if raw[:1] == _DATA_TAG:
        size, shift, at = 0, 0, 1
        while at < min(len(raw), 11):
            byte = raw[at]
            size, shift, at = size | (byte & 0x7F) << shift, shift + 7, at + 1
            if not byte & 0x80:
                if at + size == len(raw):
                    return memoryview(raw)[at:]
                break
    return _parse(raw).data


def _parse(raw: bytes) -> peer_pb2.ShareChunk:
    try:
        return peer_pb2.ShareChunk.FromString(raw)
    except DecodeError:
        raise TransportError("malformed peer message: a chunk is not a ShareChunk") from None


MAX_DECLARED_BYTES = 1 << 40
"""Largest message a header may declare (its buffer is reserved before the bytes arrive)."""


def decode_message(chunks: Iterator[bytes]) -> tuple[str, str, int, list[np.ndarray]]:
    """Reassemble one message from its chunks' wire bytes: (query id, step, sender, read-only arrays).

    The header declares every array, so the message's buffer is reserved
    once and each chunk is copied in as it arrives and then dropped: the
    receiver holds the message once (plus a chunk), not its chunks and a
    joined copy. Reserving touches no page, so a header that declares more
    than its sender sends costs address space only, and is refused.
    """
    raw = next(chunks, None)
    if raw is None:
        raise TransportError("empty peer message")
    first = _parse(raw)
    malformed = TransportError(f"malformed peer message at step {first.step!r}")
    layouts = []
    for header in first.arrays:
        dtype, shape = np.dtype(header.dtype), tuple(header.shape)
        if dtype.kind != "u":
            raise malformed
        layouts.append((dtype, shape, math.prod(shape) * dtype.itemsize))
    total = sum(size for _, _, size in layouts)
    if total > MAX_DECLARED_BYTES:
        raise malformed
    data, offset = np.empty(total, np.uint8), 0
    for piece in itertools.chain([first.data], (_data(raw) for raw in chunks)):
        if offset + len(piece) > total:
            raise malformed
        data[offset : offset + len(piece)] = np.frombuffer(piece, np.uint8)
        offset += len(piece)
    if offset != total:
        raise malformed
    data.flags.writeable = False
    arrays, offset = [], 0
    for dtype, shape, size in layouts:
        arrays.append(data[offset : offset + size].view(dtype).reshape(shape))
        offset += size
    return first.query_id, first.step, first.sender, arrays


def _details(exc: grpc.RpcError) -> str:
    return exc.details() or exc.code().name


def send_call(channel: grpc.Channel) -> grpc.StreamUnaryMultiCallable:
    """``Peer.Send`` on ``channel``, taking the chunks as :func:`encode_message` writes them."""
    return channel.stream_unary(
        SEND_METHOD, request_serializer=None, response_deserializer=peer_pb2.SendAck.FromString
    )


def add_peer_servicer(servicer: peer_pb2_grpc.PeerServicer, server: grpc.Server) -> None:
    """Serve ``servicer`` as the ``Peer`` service (:func:`peer_method_handlers`)."""
    handlers = peer_method_handlers(servicer)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("ipa.v1.Peer", handlers),))


def peer_method_handlers(servicer: peer_pb2_grpc.PeerServicer) -> dict[str, grpc.RpcMethodHandler]:
    """The ``Peer`` service's handlers: as generated from the proto, but ``Send`` is given each
    chunk's wire bytes (for :func:`decode_message`), not a parsed ``ShareChunk``."""
    unary = (
        ("Prepare", peer_pb2.PrepareRequest, peer_pb2.PrepareResponse),
        ("Abort", peer_pb2.AbortRequest, peer_pb2.AbortResponse),
        ("Outcome", peer_pb2.OutcomeRequest, peer_pb2.OutcomeResponse),
    )
    return {
        "Send": grpc.stream_unary_rpc_method_handler(
            servicer.Send, request_deserializer=None, response_serializer=peer_pb2.SendAck.SerializeToString
        ),
        **{
            name: grpc.unary_unary_rpc_method_handler(
                getattr(servicer, name),
                request_deserializer=request.FromString,
                response_serializer=response.SerializeToString,
            )
            for name, request, response in unary
        },
    }


class GrpcPeer(PeerLink):
    """One neighbour's ``Peer`` service on a (mutual TLS) channel."""

    def __init__(self, index: int, channel: grpc.Channel, timeout: float) -> None:
        self.index = index
        self._stub = peer_pb2_grpc.PeerStub(channel)
        self._send = send_call(channel)
        self._timeout = timeout

    def prepare(self, query_id: str, spec: QuerySpec, token_hash: bytes) -> None:
        """Prepare the query there; RefusedError, LimitError or UnreachableError if not.

        The first call fails fast if the peer is down (naming why, not after
        the deadline); a peer restarted a moment ago is found by a second call
        that waits out the reconnect backoff (at most 2 s).
        """
        params = spec_to_proto(spec)
        request = peer_pb2.PrepareRequest(query_id=query_id, params=params, token_hash=token_hash)
        try:
            try:
                self._stub.Prepare(request, timeout=self._timeout)
            except grpc.RpcError as first:
                if unreachable_reason(first, self._timeout) is None:
                    raise
                try:
                    self._stub.Prepare(request, timeout=min(self._timeout, 3.0), wait_for_ready=True)
                except grpc.RpcError:
                    raise first from None
        except grpc.RpcError as exc:
            why = unreachable_reason(exc, self._timeout)
            if why is not None:
                raise UnreachableError(why) from None
            if exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise LimitError(_details(exc)) from None
            if exc.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT):
                raise RefusedError(_details(exc)) from None
            raise TransportError(_details(exc)) from None

    def abort(self, query_id: str, reason: str) -> None:
        request = peer_pb2.AbortRequest(query_id=query_id, reason=reason)
        with contextlib.suppress(grpc.RpcError):  # a dead peer times out on its own
            self._stub.Abort(request, timeout=min(10.0, self._timeout))

    def send(self, query_id: str, step: str, sender: int, arrays: list[np.ndarray]) -> None:
        chunks = encode_message(query_id, step, sender, arrays)
        try:
            self._send(chunks, timeout=self._timeout, wait_for_ready=True)
        except grpc.RpcError as exc:
            reason = f"{exc.code().name}: {exc.details()}"
            raise TransportError(f"sending step {step!r} to H{self.index + 1} failed: {reason}") from None

    def outcome(self, query_id: str) -> str:
        try:
            reply = self._stub.Outcome(peer_pb2.OutcomeRequest(query_id=query_id), timeout=self._timeout)
        except grpc.RpcError as exc:
            raise TransportError(f"H{self.index + 1} gave no outcome: {_details(exc)}") from None
        return reply.state
