"""``ipa keygen``: key files for three helpers and a network.toml that user agents load."""

import json
import stat

import pytest

from ipa.certs import fingerprint
from ipa.crypto.hpke import Suite
from ipa.epochs import EpochSchedule
from ipa.errors import InputError
from ipa.network import Network, read_key_registry
from ipa_client.cli import main
from ipa_client.commands.keygen import helper_ports, write_hpke_keys, write_network
from ipa_client.identity import load_identity
from ipa_helper.config import load_config


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


def test_keygen_issues_each_collector_an_identity_the_helpers_know(tmp_path, capsys):
    argv = ["keygen", "--out", str(tmp_path), "--collector", "ads=shop.example,news.example"]
    assert main([*argv, "--collector", "metrics=blog.example", "--delta", "1e-7"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert sorted(summary["collectors"]) == ["ads", "metrics"]
    ads = load_identity(summary["collectors"]["ads"])
    assert ads.name == "ads" and b"BEGIN CERTIFICATE" in ads.cert
    assert stat.S_IMODE((tmp_path / "collectors" / "ads.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    for i in (1, 2, 3):
        config = load_config(tmp_path / f"helper{i}.toml")
        assert config.delta == 1e-7 and config.collector_ca == tmp_path / "ca.pem"
        by_name = {c.name: c for c in config.collectors}
        assert by_name["ads"].sites == ("shop.example", "news.example")
        assert by_name["ads"].fingerprint == fingerprint(ads.cert)
        assert not by_name["metrics"].serves("shop.example")


def test_keygen_without_collectors_makes_one_default_collector_for_every_site(tmp_path, capsys):
    assert main(["keygen", "--out", str(tmp_path)]) == 0
    assert list(json.loads(capsys.readouterr().out)["collectors"]) == ["default"]
    (default,) = load_config(tmp_path / "helper1.toml").collectors
    assert default.name == "default" and default.serves("any.example")


@pytest.mark.parametrize(
    "bad", [["--collector", "ads"], ["--collector", "ads="], ["--collector", "../x=s"], ["--delta", "1"]]
)
def test_keygen_refuses_bad_collectors_and_deltas(tmp_path, capsys, bad):
    assert main(["keygen", "--out", str(tmp_path), *bad]) == 2
    assert "usage" in capsys.readouterr().err
    assert not (tmp_path / "helper1.hpke.toml").exists()


def test_keygen_publishes_the_epoch_schedule(tmp_path, capsys):
    default, daily = tmp_path / "default", tmp_path / "daily"
    assert main(["keygen", "--out", str(default)]) == 0
    schedule_flags = ["--epoch-seconds", "86400", "--epoch-origin", "1700000000"]
    assert main(["keygen", "--out", str(daily), *schedule_flags]) == 0
    assert Network.load(default / "network.toml").epochs == EpochSchedule()
    schedule = Network.load(daily / "network.toml").epochs
    assert schedule == EpochSchedule(86_400, 1_700_000_000)
    assert schedule.epoch_at(1_700_000_000 + 3 * 86_400 + 5) == 3


def test_keygen_refuses_an_epoch_of_no_length(tmp_path, capsys):
    assert main(["keygen", "--out", str(tmp_path / "net"), "--epoch-seconds", "0"]) == 2
    assert "--epoch-seconds" in capsys.readouterr().err
    assert not (tmp_path / "net" / "network.toml").exists()
