"""The gRPC implementation of the MPC channel interface.

A message (the arrays one step sends to one neighbour) travels as one
client-streaming ``Peer.Send`` call: the first chunk names the query, step,
sender and array layouts, and the bytes follow in chunks of about 1 MiB.
The receiving helper's ``Peer`` servicer (:mod:`ipa_helper.services`) stores it in its
:class:`~ipa_helper.mailbox.Mailbox`; :meth:`GrpcChannel.receive` takes it
from there. Every call has a deadline; a late or missing message is a
TransportError, so a stalled or dead peer fails the query instead of hanging it.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np

from ipa.errors import TransportError
from ipa.mpc.channel import Channel, Peer
from ipa_helper.mailbox import Mailbox
from ipa_rpc import CHUNK_BYTES
from ipa_rpc.v1 import peer_pb2, peer_pb2_grpc

__all__ = ["CHUNK_BYTES", "GrpcChannel", "decode_message", "encode_message"]


def encode_message(
    query_id: str, step: str, sender: int, arrays: list[np.ndarray]
) -> Iterator[peer_pb2.ShareChunk]:
    """The chunks of one message; the first carries the header.

    Chunks are cut from each array's own memory, so the bytes are copied once
    (into the protobuf message), not first into one joined buffer.
    """
    headers = [peer_pb2.ArrayHeader(dtype=a.dtype.str, shape=a.shape) for a in arrays]
    views = [memoryview(np.ascontiguousarray(a).reshape(-1).view(np.uint8)) for a in arrays]
    pieces = (
        view[start : start + CHUNK_BYTES] for view in views for start in range(0, len(view), CHUNK_BYTES)
    )
    first = next(pieces, b"")
    yield peer_pb2.ShareChunk(query_id=query_id, step=step, sender=sender, arrays=headers, data=bytes(first))
    for piece in pieces:
        yield peer_pb2.ShareChunk(data=bytes(piece))


def decode_message(chunks: Iterator[peer_pb2.ShareChunk]) -> tuple[str, str, int, list[np.ndarray]]:
    """Reassemble one message: (query id, step, sender, read-only arrays)."""
    first = next(chunks, None)
    if first is None:
        raise TransportError("empty peer message")
    data = b"".join([first.data, *(c.data for c in chunks)])
    arrays, offset = [], 0
    for header in first.arrays:
        dtype = np.dtype(header.dtype)
        count = int(np.prod(header.shape, dtype=np.int64))
        size = count * dtype.itemsize
        if dtype.kind != "u" or offset + size > len(data):
            raise TransportError(f"malformed peer message at step {first.step!r}")
        arrays.append(np.frombuffer(data, dtype, count, offset).reshape(tuple(header.shape)))
        offset += size
    if offset != len(data):
        raise TransportError(f"malformed peer message at step {first.step!r}")
    return first.query_id, first.step, first.sender, arrays


class GrpcChannel(Channel):
    """The channel of one party in one query, over gRPC stubs to its two neighbours."""

    def __init__(
        self,
        party: int,
        query_id: str,
        stubs: dict[Peer, peer_pb2_grpc.PeerStub],
        mailbox: Mailbox,
        timeout: float,
    ) -> None:
        super().__init__(party)
        self._query_id = query_id
        self._stubs = stubs
        self._mailbox = mailbox
        self._timeout = timeout

    def _deliver(self, step: str, to: Peer, arrays: list[np.ndarray]) -> None:
        chunks = encode_message(self._query_id, step, self.party, arrays)
        try:
            self._stubs[to].Send(chunks, timeout=self._timeout, wait_for_ready=True)
        except grpc.RpcError as exc:
            peer = f"H{to.of(self.party) + 1}"
            reason = f"{exc.code().name}: {exc.details()}"
            raise TransportError(f"sending step {step!r} to {peer} failed: {reason}") from None

    def _collect(self, step: str, frm: Peer) -> list[np.ndarray]:
        return self._mailbox.take(self._query_id, frm.of(self.party), step, self._timeout)
