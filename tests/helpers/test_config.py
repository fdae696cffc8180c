import pytest

from ipa.errors import ConfigError
from ipa_helper.config import load_config

GOOD = """
[helper]
index = 2
listen = "127.0.0.1:7102"
peer_listen = "127.0.0.1:7103"
data_dir = "data"
timeout_seconds = 5

[tls]
cert = "h2.pem"
key = "h2.key"
collector_ca = "ca.pem"

[hpke]
keys = "h2.hpke.toml"

[[peers]]
index = 1
address = "127.0.0.1:7101"
cert = "h1.pem"

[[peers]]
index = 3
address = "127.0.0.1:7105"
cert = "h3.pem"

[[collectors]]
name = "ads"
sites = ["shop.example", "news.example"]
fingerprint = "00ff"
"""


def write(tmp_path, text):
    path = tmp_path / "helper.toml"
    path.write_text(text)
    return path


def test_a_good_config_resolves_paths_next_to_the_file(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert config.party == 1 and config.secure and not config.allow_unnoised
    assert config.tls_cert == tmp_path / "h2.pem" and config.hpke_keys == tmp_path / "h2.hpke.toml"
    assert [p.index for p in config.peers] == [1, 3]
    assert config.timeout_seconds == 5.0
    assert config.collector_ca == tmp_path / "ca.pem" and config.delta == 1e-9
    (ads,) = config.collectors
    assert ads.name == "ads" and ads.fingerprint == "00ff"
    assert ads.serves("news.example") and not ads.serves("other.example")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("index = 2", "index = 4"), "index must be 1, 2 or 3"),
        (('listen = "127.0.0.1:7102"\n', ""), "missing listen"),
        (("timeout_seconds = 5", 'timeout_seconds = "5"'), "timeout_seconds must be a float"),
        (("index = 3", "index = 1"), "exactly the two other helpers"),
        (("[hpke]", "[hpkee]"), "missing hpke"),
        (("[helper]", "[helper"), "not valid TOML"),
        (('collector_ca = "ca.pem"\n', ""), "missing collector_ca"),
        (('sites = ["shop.example", "news.example"]', "sites = []"), "non-empty list of site names"),
        (('fingerprint = "00ff"\n', ""), "missing fingerprint"),
        (("timeout_seconds = 5", "timeout_seconds = 5\ndelta = 1.5"), "delta must be in"),
    ],
)
def test_bad_configs_name_the_file_and_key(tmp_path, change, message):
    path = write(tmp_path, GOOD.replace(*change, 1))
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path)
    assert str(path) in str(error.value)


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read helper config"):
        load_config(tmp_path / "nope.toml")
