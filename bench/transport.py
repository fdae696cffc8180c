"""The helpers' peer transport alone: MPC messages over gRPC with mutual TLS, on this machine.

    python bench/transport.py [--message-mib M] [--total-gib G] [--insecure] [--socket] [--json F]

One process serves the ``Peer`` service (as ``ipa_helper.server`` does)
and sends it messages of ``M`` MiB of random uint64 words through
:class:`ipa_helper.transport.GrpcPeer`, as a helper sends a step's arrays to a
neighbour; the receiver reassembles each one (:func:`ipa_helper.transport.decode_message`)
and drops it. Printed: MB per second of wall time, and MB per CPU-second of the
process (sender and receiver together), which is what a query on a machine
whose cores are all busy pays for each byte it sends. Malicious mode sends about
ten times the bytes of semi-honest mode (``docs/malicious.md`` §9).

``--socket`` sends the same messages over one long-lived socket instead
(Python's ``ssl`` for mutual TLS with the same certificates, TLS 1.3), each
read straight into a preallocated array and acknowledged by one byte, as a
``Send`` call is: the least a hand-written bulk transport would cost
(``docs/malicious.md`` §9.8).
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np

from ipa.certs import common_name, make_identity
from ipa.errors import TransportError
from ipa_helper.transport import GrpcPeer, add_peer_servicer, decode_message, peer_channel
from ipa_rpc import MESSAGE_LIMITS
from ipa_rpc.v1 import peer_pb2, peer_pb2_grpc


class _Sink(peer_pb2_grpc.PeerServicer):
    def Send(self, request_iterator, context):  # noqa: N802
        try:
            decode_message(request_iterator)
        except TransportError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return peer_pb2.SendAck()


def measure(message_bytes: int, total_bytes: int, insecure: bool) -> dict[str, float]:
    """Send ``total_bytes`` in messages of ``message_bytes``; the rates, after one warm-up message."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=MESSAGE_LIMITS)
    add_peer_servicer(_Sink(), server)
    (cert1, key1), (cert2, key2) = make_identity(1, ["localhost"]), make_identity(2, ["localhost"])
    if insecure:
        port = server.add_insecure_port("localhost:0")
    else:
        credentials = grpc.ssl_server_credentials(
            [(key2, cert2)], root_certificates=cert1, require_client_auth=True
        )
        port = server.add_secure_port("localhost:0", credentials)
    server.start()
    channel = peer_channel(f"localhost:{port}", 2, MESSAGE_LIMITS, None if insecure else (key1, cert1, cert2))
    peer = GrpcPeer(1, channel, timeout=120.0)
    words = np.random.default_rng(0).integers(0, 2**63, message_bytes // 8, dtype=np.uint64)
    peer.send("bench", "warm-up", 0, [words])
    count = max(1, total_bytes // message_bytes)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        peer.send("bench", f"m{i}", 0, [words])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    channel.close()
    server.stop(None)
    sent = count * words.nbytes
    return {"bytes": sent, "mb_per_s": sent / wall / 1e6, "mb_per_cpu_s": sent / cpu / 1e6}


def _tls(purpose: int, folder: Path, cert: bytes, key: bytes, peer: bytes) -> ssl.SSLContext:
    """Mutual TLS as between helpers: this party's certificate, the peer's as the only root."""
    context = ssl.SSLContext(purpose)
    (folder / "cert.pem").write_bytes(cert)
    (folder / "key.pem").write_bytes(key)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    context.load_verify_locations(cadata=peer.decode())
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _receive(listener: socket.socket, context: ssl.SSLContext | None, size: int, count: int) -> None:
    connection, _ = listener.accept()
    if context is not None:
        connection = context.wrap_socket(connection, server_side=True)
    with connection:
        for _ in range(count):
            view, got = memoryview(np.empty(size, np.uint8)), 0
            while got < size:
                got += connection.recv_into(view[got:])
            connection.sendall(b"k")


def measure_socket(message_bytes: int, total_bytes: int, insecure: bool) -> dict[str, float]:
    """:func:`measure` over one socket, messages read into preallocated arrays (``--socket``)."""
    (cert1, key1), (cert2, key2) = make_identity(1, ["localhost"]), make_identity(2, ["localhost"])
    words = np.random.default_rng(0).integers(0, 2**63, message_bytes // 8, dtype=np.uint64)
    count = max(1, total_bytes // message_bytes)
    with tempfile.TemporaryDirectory() as folder, socket.create_server(("localhost", 0)) as listener:
        server, client = (
            (None, None)
            if insecure
            else (
                _tls(ssl.PROTOCOL_TLS_SERVER, Path(folder), cert2, key2, cert1),
                _tls(ssl.PROTOCOL_TLS_CLIENT, Path(folder), cert1, key1, cert2),
            )
        )
        receiver = threading.Thread(target=_receive, args=(listener, server, words.nbytes, count + 1))
        receiver.start()
        sender = socket.create_connection(listener.getsockname()[:2])
        if client is not None:
            sender = client.wrap_socket(sender, server_hostname=common_name(2))
        with sender:
            message = memoryview(words).cast("B")
            sender.sendall(message)  # warm-up
            sender.recv(1)
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(count):
                sender.sendall(message)
                sender.recv(1)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        receiver.join()
    sent = count * words.nbytes
    return {"bytes": sent, "mb_per_s": sent / wall / 1e6, "mb_per_cpu_s": sent / cpu / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--message-mib", type=float, default=8.0)
    parser.add_argument("--total-gib", type=float, default=2.0)
    parser.add_argument("--insecure", action="store_true", help="plaintext instead of mutual TLS")
    parser.add_argument("--socket", action="store_true", help="one long-lived socket instead of gRPC")
    parser.add_argument("--json", metavar="F")
    args = parser.parse_args()
    run = measure_socket if args.socket else measure
    figures = run(int(args.message_mib * 2**20), int(args.total_gib * 2**30), args.insecure)
    mode = ("plaintext" if args.insecure else "mutual TLS") + (", one socket" if args.socket else ", gRPC")
    print(f"# peer transport, {mode}, messages of {args.message_mib:g} MiB, {figures['bytes'] / 1e9:.2f} GB")
    print(f"{figures['mb_per_s']:,.0f} MB/s wall, {figures['mb_per_cpu_s']:,.0f} MB per CPU-second")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
