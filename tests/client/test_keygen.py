"""``ipa keygen``: key files for three helpers and a network.toml that user agents load."""

import json
import stat

import pytest

from ipa.crypto.hpke import Suite
from ipa.errors import InputError
from ipa.network import Network, read_key_registry
from ipa_client.cli import main
from ipa_client.commands.keygen import helper_ports, write_hpke_keys, write_network


def test_keygen_writes_keys_and_network(tmp_path, capsys):
    out = tmp_path / "net"
    assert main(["keygen", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["suite"] == Suite.X25519.label
    network = Network.load(summary["network"])
    for h, path in enumerate(summary["hpke_keys"]):
        assert path.endswith(f"helper{h + 1}.hpke.toml")
        assert stat.S_IMODE((out / f"helper{h + 1}.hpke.toml").stat().st_mode) == 0o600
        registry = read_key_registry(path)
        assert registry.helper == h and registry.public_key() == network.public_keys[h]


def test_keygen_refuses_to_replace_keys_unless_forced(tmp_path, capsys):
    assert main(["keygen", "--out", str(tmp_path)]) == 0
    first = (tmp_path / "helper1.hpke.toml").read_text()
    assert main(["keygen", "--out", str(tmp_path)]) == 2
    assert "already exist" in capsys.readouterr().err
    assert (tmp_path / "helper1.hpke.toml").read_text() == first
    assert main(["keygen", "--out", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "helper1.hpke.toml").read_text() != first


@pytest.mark.skipif(not Suite.MLKEM768_X25519.supported, reason="no ML-KEM in this cryptography build")
def test_keygen_post_quantum_suite(tmp_path):
    assert main(["keygen", "--out", str(tmp_path), "--suite", "mlkem768-x25519"]) == 0
    assert Network.load(tmp_path / "network.toml").suite is Suite.MLKEM768_X25519


def test_functions_for_later_extension(tmp_path):
    registries, paths = write_hpke_keys(tmp_path)
    path = write_network(tmp_path, registries)
    assert Network.load(path) == Network.from_registries(registries) and len(paths) == 3
    with pytest.raises(Exception, match="already exist"):
        write_network(tmp_path, registries)


@pytest.mark.parametrize("base", ["65533", "65531", "0", "-1"])
def test_keygen_refuses_ports_that_do_not_exist(tmp_path, capsys, base):
    # 65533 used to write a config listening on port 65537
    assert main(["keygen", "--out", str(tmp_path), "--host", "h", "--base-port", base]) == 2
    assert "--base-port" in capsys.readouterr().err
    assert not (tmp_path / "helper3.toml").exists()


def test_keygen_takes_the_last_base_port_whose_six_ports_exist(tmp_path):
    assert main(["keygen", "--out", str(tmp_path), "--host", "h", "--base-port", "65530"]) == 0
    assert ':65535"' in (tmp_path / "helper3.toml").read_text()
    with pytest.raises(InputError, match=r"base port must be in \[1, 65530\]"):
        helper_ports(65533, 2)
