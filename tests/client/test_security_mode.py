"""The security mode of a network and its queries: what ``ipa keygen`` writes and what a helper runs."""

import pytest

from ipa.errors import ConfigError
from ipa.network import Network
from ipa_client.cli import main
from ipa_helper.config import load_config
from ipa_helper.helper import security_of


@pytest.mark.parametrize(
    ("flags", "mode", "allowed"),
    [
        ([], "malicious", False),
        (["--allow-semi-honest"], "malicious", True),
        (["--security", "semi-honest"], "semi-honest", True),
        (["--security", "malicious"], "malicious", False),
    ],
)
def test_keygen_writes_the_network_mode_and_the_helpers_policy(tmp_path, capsys, flags, mode, allowed):
    assert main(["keygen", "--out", str(tmp_path), *flags]) == 0
    assert Network.load(tmp_path / "network.toml").security == mode
    assert f'security = "{mode}"' in (tmp_path / "network.toml").read_text()
    for i in (1, 2, 3):
        assert load_config(tmp_path / f"helper{i}.toml").allow_semi_honest is allowed


def test_a_network_without_a_mode_is_malicious_and_a_bad_mode_is_named(tmp_path, capsys):
    assert main(["keygen", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "network.toml").read_text()
    bare = Network.from_toml(text.replace('security = "malicious"\n', ""))
    assert bare.security == "malicious"
    with pytest.raises(ConfigError, match="security: must be one of"):
        _ = Network.from_toml(text.replace('"malicious"', '"honest"')).security


def test_keygen_refuses_an_unknown_mode(tmp_path, capsys):
    assert main(["keygen", "--out", str(tmp_path), "--security", "honest"]) == 2
    assert "--security" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("requested", "allowed", "runs"),
    [
        ("malicious", True, "malicious"),
        ("malicious", False, "malicious"),
        ("semi-honest", True, "semi-honest"),
        ("", False, "malicious"),
        ("", True, "semi-honest"),
    ],
)
def test_a_query_runs_in_the_mode_it_asks_for_else_the_helpers_default(requested, allowed, runs):
    assert security_of(requested, allowed) == runs
