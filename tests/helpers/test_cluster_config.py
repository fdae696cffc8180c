"""``[cluster]``: parsing, ``ipa keygen --workers``, the clear errors of a helper whose cluster cannot start.

The queries over real Ray clusters are in tests/e2e/test_cluster.py.
"""

import json
import signal
import socket
import subprocess
import sys
import tomllib

import pytest

from ipa.errors import ConfigError
from ipa_client.cli import main
from ipa_helper.cluster import _kill_attempt
from ipa_helper.config import ClusterConfig, load_config


def keygen(tmp_path, *args):
    out = tmp_path / "net"
    assert main(["keygen", "--out", str(out), *args]) == 0
    return out


def set_cluster(path, **table):
    lines = [line for line in path.read_text().splitlines()]
    cut = lines.index("[cluster]") if "[cluster]" in lines else len(lines)
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in table.items())
    path.write_text("\n".join(lines[:cut]) + f"\n[cluster]\n{body}\n")


def test_keygen_workers_writes_the_cluster_table_and_the_default_is_one_process(tmp_path, capsys):
    out = keygen(tmp_path, "--workers", "3")
    for i in (1, 2, 3):
        path = out / f"helper{i}.toml"
        assert tomllib.loads(path.read_text())["cluster"] == {"workers": 3, "address": ""}
        assert load_config(path).cluster == ClusterConfig(workers=3, address="")
    plain = keygen(tmp_path / "plain")
    assert "cluster" not in tomllib.loads((plain / "helper1.toml").read_text())
    assert load_config(plain / "helper1.toml").cluster.workers == 1


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"workers": 0}, "workers must be in [1, 1024]"),
        ({"workers": "2"}, "workers must be a int"),
        ({"workers": 2, "address": 7}, "address must be a str"),
        ({"workers": 2, "object_store_bytes": 1000}, "object_store_bytes must be at least"),
        ({"workers": 2, "worker": 3}, "unknown key worker"),
    ],
)
def test_a_bad_cluster_table_is_refused_naming_the_key(tmp_path, capsys, table, message):
    path = keygen(tmp_path) / "helper1.toml"
    set_cluster(path, **table)
    with pytest.raises(ConfigError, match=r"\[cluster\]") as refused:
        load_config(path)
    assert message in str(refused.value)


def helper(config, *env: str):
    """``ipa-helper --config`` (with ``NAME=VALUE`` settings in front); it must exit by itself."""
    code = "; ".join(["import runpy, sys", *env, "sys.argv = ['ipa-helper', '--config', sys.argv[1]]"])
    code += "; runpy.run_module('ipa_helper.server', run_name='__main__')"
    command = [sys.executable, "-c", code, str(config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_a_helper_whose_ray_cluster_cannot_be_reached_exits_naming_the_address(tmp_path, capsys):
    path = keygen(tmp_path) / "helper1.toml"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    set_cluster(path, workers=2, address=f"127.0.0.1:{port}")
    done = helper(path)
    assert done.returncode == 2
    assert f"ipa-helper: error: [cluster] address 127.0.0.1:{port}: the Ray cluster cannot be reached" in (
        done.stderr
    )
    assert not (path.parent / "data" / "helper1" / "budget.sqlite").exists()  # refused before the ledger


def test_a_helper_with_workers_but_no_ray_says_how_to_install_it(tmp_path, capsys):
    path = keygen(tmp_path) / "helper1.toml"
    set_cluster(path, workers=2)
    done = helper(path, "sys.modules['ray'] = None")  # import ray raises ImportError, as if absent
    assert done.returncode == 2
    assert "Ray, which is not installed: pip install 'ipa[cluster]'" in done.stderr


def test_a_failed_starts_processes_are_killed_by_its_temp_dir_and_no_other(tmp_path):
    """``_kill_attempt`` (a local start that timed out) kills what names its directory, nothing else."""
    mine, other = tmp_path / "ipa-ray-h0-attempt", tmp_path / "ipa-ray-h0-other"
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    doomed = subprocess.Popen([*sleeper, str(mine)])
    spared = subprocess.Popen([*sleeper, str(other)])
    try:
        _kill_attempt(str(mine))
        assert doomed.wait(timeout=10) == -signal.SIGKILL
        assert spared.poll() is None
    finally:
        for process in (doomed, spared):
            process.kill()
            process.wait()
