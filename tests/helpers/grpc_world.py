"""Three helpers' peer services on loopback gRPC ports, in this process (insecure)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import grpc

from ipa.mpc.channel import Peer
from ipa.mpc.context import Context
from ipa.mpc.prss import agree_seeds
from ipa_helper.mailbox import Mailbox
from ipa_helper.transport import GrpcChannel, PeerServicer
from ipa_rpc.v1 import peer_pb2_grpc


class GrpcWorld:
    def __init__(self) -> None:
        self.mailboxes = [Mailbox() for _ in range(3)]
        self.servers, self.ports = [], []
        for party in range(3):
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
            peer_pb2_grpc.add_PeerServicer_to_server(
                PeerServicer(party, self.mailboxes[party], lambda ctx: None), server
            )
            self.ports.append(server.add_insecure_port("127.0.0.1:0"))
            server.start()
            self.servers.append(server)
        self.channels = [grpc.insecure_channel(f"127.0.0.1:{p}") for p in self.ports]

    def run(
        self,
        protocol: Callable[[Context, Any], Any],
        inputs: Sequence[Any],
        query_id: str = "q1",
        timeout: float = 30.0,
    ) -> tuple[list[Any], list[GrpcChannel]]:
        outputs: list[Any] = [None] * 3
        errors: list[BaseException] = []
        channels = []
        for party in range(3):
            stubs = {p: peer_pb2_grpc.PeerStub(self.channels[p.of(party)]) for p in Peer}
            channels.append(GrpcChannel(party, query_id, stubs, self.mailboxes[party], timeout))

        def body(party: int) -> None:
            try:
                prss = agree_seeds(channels[party])
                outputs[party] = protocol(Context(party, channels[party], prss), inputs[party])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=body, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return outputs, channels

    def close(self) -> None:
        for c in self.channels:
            c.close()
        for s in self.servers:
            s.stop(None)
