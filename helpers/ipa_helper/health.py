"""``python -m ipa_helper.health --config FILE``: does the helper of FILE serve?

Asks the gRPC health service (``grpc.health.v1.Health/Check``, overall
status) on the helper's collector port, the way a collector would connect:
over TLS, trusting the helper's own certificate from FILE, and presenting
the helper's own TLS identity if the port asks for a client certificate. The
helper sets SERVING once both its servers listen. Exit status 0 if it answers SERVING,
1 if it does not (not listening, not serving, no answer within
``--timeout``), 2 if FILE cannot be used. One line on stderr says which;
this is the containers' health check (``helpers/compose.yaml``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ipa.certs import common_name
from ipa.errors import IpaError
from ipa_helper.config import HelperConfig, load_config

__all__ = ["local_address", "main", "serving"]


def local_address(listen: str) -> str:
    """Where a process beside the helper reaches ``listen``: a wildcard host becomes loopback."""
    host, port = listen.rsplit(":", 1)
    if host in ("0.0.0.0", "[::]", "::", ""):
        host = "127.0.0.1"
    return f"{host}:{port}"


def _read(path: Path | None, what: str) -> bytes:
    try:
        return path.read_bytes()  # type: ignore[union-attr]
    except OSError as exc:
        raise IpaError(f"cannot read {what} {path}: {exc.strerror}") from None


def _channel(config: HelperConfig) -> grpc.Channel:
    address = local_address(config.listen)
    if not config.secure:
        return grpc.insecure_channel(address)
    cert, key = _read(config.tls_cert, "TLS certificate"), _read(config.tls_key, "TLS key")
    credentials = grpc.ssl_channel_credentials(cert, private_key=key, certificate_chain=cert)
    options = [("grpc.ssl_target_name_override", common_name(config.index))]
    return grpc.secure_channel(address, credentials, options=options)


def serving(config: HelperConfig, timeout: float = 3.0) -> tuple[bool, str]:
    """(True, "SERVING") if the helper answers SERVING within ``timeout`` s, else (False, why)."""
    with _channel(config) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(  # type: ignore[attr-defined]  # typeshed's HealthStub lists no methods
                health_pb2.HealthCheckRequest(service=""), timeout=timeout, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            return False, f"{exc.code().name}: {exc.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ipa_helper.health", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, metavar="FILE", help="the helper's TOML config")
    parser.add_argument("--timeout", type=float, default=3.0, metavar="S", help="seconds to wait (default 3)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        ok, status = serving(config, args.timeout)
    except IpaError as exc:
        print(f"ipa-helper health: error: {exc}", file=sys.stderr)
        return 2
    print(f"H{config.index} at {local_address(config.listen)}: {status}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
