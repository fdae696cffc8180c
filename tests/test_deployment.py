"""docker-compose.yml and helpers/Dockerfile agree with what ``ipa keygen --compose`` writes.

No Docker engine runs on the development machines, so these files are checked
by reading them: services, commands, mounts and ports against the helper
configs, and the image's entrypoint against the project's console scripts.
The entrypoint itself runs in the end-to-end tests as local processes.
"""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from ipa_helper.config import load_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    out = tmp_path_factory.mktemp("compose") / "network"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ipa_client.cli",
            "keygen",
            "--out",
            str(out),
            "--compose",
            "--host",
            "localhost",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout)["helper_configs"]
    return out


def test_three_helper_services_run_their_own_config(compose, network):
    services = compose["services"]
    assert sorted(services) == ["helper1", "helper2", "helper3"]
    for i in (1, 2, 3):
        service = services[f"helper{i}"]
        assert service["image"] == "ipa-helper"
        host_dir, mount = service["volumes"][0].split(":")
        assert (ROOT / host_dir).resolve() == (ROOT / "network").resolve() and mount == "/network"
        assert service["command"] == ["--config", f"/network/helper{i}.toml"]
        config = load_config(network / f"helper{i}.toml")  # the file the container will read
        assert config.index == i and config.secure
        port = config.listen.rsplit(":", 1)[1]
        assert service["ports"] == [f"{port}:{port}"]
        assert config.listen.startswith("0.0.0.0:")


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
