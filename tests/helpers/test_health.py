"""``python -m ipa_helper.health``: the containers' health check, against a real helper server."""

from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ipa_client.local_network import make_network
from ipa_helper.config import load_config
from ipa_helper.health import local_address, main, serving
from ipa_helper.server import start


@pytest.fixture
def config_file(tmp_path):
    make_network(tmp_path)
    return tmp_path / "helper2.toml"


def test_a_running_helper_answers_serving(config_file, capsys):
    running = start(load_config(config_file))
    try:
        assert main(["--config", str(config_file)]) == 0
        assert "H2 at 127.0.0.1:" in capsys.readouterr().err
        assert serving(load_config(config_file)) == (True, "SERVING")
    finally:
        running.stop(grace=None)


def test_no_helper_listening_is_unhealthy(config_file, capsys):
    assert main(["--config", str(config_file), "--timeout", "0.5"]) == 1
    assert "DEADLINE_EXCEEDED" in capsys.readouterr().err


def test_a_helper_not_presenting_the_configured_certificate_is_unhealthy(config_file, tmp_path):
    running = start(load_config(config_file))
    try:  # the check now trusts H3's certificate only; the server still presents H2's
        (tmp_path / "helper2.pem").write_bytes((tmp_path / "helper3.pem").read_bytes())
        ok, why = serving(load_config(config_file), timeout=1.0)
        assert not ok and why.startswith(("UNAVAILABLE", "DEADLINE_EXCEEDED"))
    finally:
        running.stop(grace=None)


def test_the_check_presents_the_helpers_identity_where_the_port_asks_for_one(config_file, tmp_path):
    """A collector port with mutual TLS that trusts the helper's own certificate lets the check in."""
    config = load_config(config_file)
    cert, key = config.tls_cert.read_bytes(), config.tls_key.read_bytes()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials([(key, cert)], root_certificates=cert, require_client_auth=True)
    assert server.add_secure_port(config.listen, credentials)
    server.start()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert serving(config, timeout=2.0) == (False, "NOT_SERVING")
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert serving(config, timeout=2.0) == (True, "SERVING")
    finally:
        server.stop(None)


def test_an_unreadable_config_is_an_error(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("listen", "address"),
    [("0.0.0.0:7100", "127.0.0.1:7100"), ("[::]:7102", "127.0.0.1:7102"), ("10.0.0.5:7104", "10.0.0.5:7104")],
)
def test_a_wildcard_listen_address_is_checked_on_loopback(listen, address):
    assert local_address(listen) == address
