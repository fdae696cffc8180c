"""docker-compose.yml, helpers/compose.yaml and helpers/Dockerfile agree with ``ipa keygen --compose``.

Checked by reading the files, in a second, so a mismatch is named precisely;
``tests/deploy`` runs them for real against a Docker engine.
"""

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from ipa_helper.config import load_config

ROOT = Path(__file__).resolve().parent.parent
BASE_PORT = 7300  # not keygen's default: compose must follow --base-port


def keygen(out: Path, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "ipa_client.cli", "keygen", "--out", str(out), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    out = tmp_path_factory.mktemp("compose") / "network"
    keygen(out, "--compose", "--host", "localhost", "--base-port", str(BASE_PORT))
    return out


def interpolate(text: str, variables: dict[str, str]) -> str:
    """Compose's ``${NAME}`` and ``${NAME:?message}``: a missing variable is an error, as in compose."""

    def value(match: re.Match) -> str:
        assert match.group(1) in variables, f"{match.group(1)} not in compose.env"
        return variables[match.group(1)]

    return re.sub(r"\$\{(\w+)(?::\?[^}]*)?\}", value, text)


@pytest.fixture(scope="module")
def compose(network):
    """The services as compose sees them: helpers/compose.yaml with keygen's compose.env."""
    top = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    (include,) = top["include"]
    assert include["env_file"] == "network/compose.env" and include["project_directory"] == "."
    lines = (network / "compose.env").read_text().splitlines()
    variables = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return yaml.safe_load(interpolate((ROOT / include["path"]).read_text(), variables))


def test_keygen_writes_compose_env_for_the_invoking_user_and_its_ports(network):
    lines = (network / "compose.env").read_text().splitlines()
    assert [line for line in lines if not line.startswith("#")] == [
        f"IPA_USER={os.getuid()}:{os.getgid()}",
        f"IPA_PORT_1={BASE_PORT}",
        f"IPA_PORT_2={BASE_PORT + 2}",
        f"IPA_PORT_3={BASE_PORT + 4}",
    ]


def test_keygen_without_compose_writes_no_compose_env(tmp_path):
    keygen(tmp_path, "--host", "localhost")
    assert not (tmp_path / "compose.env").exists()


def test_three_helper_services_run_their_own_config_as_the_key_owner(compose, network):
    services = compose["services"]
    assert sorted(services) == ["helper1", "helper2", "helper3"]
    for i in (1, 2, 3):
        service = services[f"helper{i}"]
        assert service["image"] == "ipa-helper" and service["user"] == f"{os.getuid()}:{os.getgid()}"
        assert service["volumes"] == ["./network:/network"]
        assert service["command"] == ["--config", f"/network/helper{i}.toml"]
        assert service["healthcheck"]["test"] == [
            "CMD",
            "python3",
            "-m",
            "ipa_helper.health",
            *service["command"],
        ]
        config = load_config(network / f"helper{i}.toml")  # the file the container will read
        assert config.index == i and config.secure and config.listen.startswith("0.0.0.0:")
        port = config.listen.rsplit(":", 1)[1]
        assert service["ports"] == [f"{port}:{port}"]


def test_only_helper1_builds_and_no_service_pulls(compose):
    services = compose["services"]
    assert services["helper1"]["build"] == {"context": ".", "dockerfile": "helpers/Dockerfile"}
    assert services["helper1"]["pull_policy"] == "build"
    assert [services[f"helper{i}"]["pull_policy"] for i in (2, 3)] == ["never", "never"]
    assert set(services["helper1"]["depends_on"]) == {"helper2", "helper3"}


def test_peers_reach_each_other_by_service_name(network):
    configs = {i: load_config(network / f"helper{i}.toml") for i in (1, 2, 3)}
    for config in configs.values():
        for peer in config.peers:
            host, port = peer.address.rsplit(":", 1)
            assert host == f"helper{peer.index}"
            assert configs[peer.index].peer_listen.endswith(f":{port}")


def test_clients_reach_the_published_ports(compose, network):
    table = tomllib.loads((network / "network.toml").read_text())
    for entry in table["helpers"]:
        host, port = entry["address"].rsplit(":", 1)
        assert host == "localhost"
        assert f"{port}:{port}" in compose["services"][f"helper{entry['helper']}"]["ports"]
        assert (network / entry["cert"]).exists()


def test_the_build_context_is_the_sources_only():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*"  # everything out (network/, .venv, caches), then the sources back in
    copied = re.findall(r"^COPY (\S+)", (ROOT / "helpers" / "Dockerfile").read_text(), re.M)
    allowed = {rule.removeprefix("!").rstrip("/") for rule in rules if rule.startswith("!")}
    assert set(copied) <= allowed
    assert {"**/*.key", "**/*.hpke.toml"} <= set(rules)  # not even a stray key below a source folder


def test_the_image_builds_from_sources_and_runs_the_helper_entrypoint():
    dockerfile = (ROOT / "helpers" / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (\S+)", dockerfile, re.M):
        assert (ROOT / source).exists(), source
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (.+)$", dockerfile, re.M).group(1))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["ipa-helper"] and scripts["ipa-helper"] == "ipa_helper.server:main"
    exposed = {int(p) for p in re.search(r"^EXPOSE (.+)$", dockerfile, re.M).group(1).split()}
    assert exposed == set(range(7100, 7106))  # keygen's default base port and the five after it


def test_the_entrypoint_refuses_a_config_without_tls_unless_insecure(tmp_path):
    config = tmp_path / "h.toml"
    config.write_text(
        '[helper]\nindex = 1\nlisten = "127.0.0.1:1"\npeer_listen = "127.0.0.1:2"\ndata_dir = "d"\n'
        '[hpke]\nkeys = "k.toml"\n'
        '[[peers]]\nindex = 2\naddress = "a:1"\n[[peers]]\nindex = 3\naddress = "b:1"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "ipa_helper.server", "--config", str(config)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "[tls]" in done.stderr
