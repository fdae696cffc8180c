"""Every Python block of README.md runs as written, against three real helper processes.

The blocks use ``net/network.toml``: the test starts a local network in
``DIR/net`` (what ``ipa keygen --out net --allow-unnoised`` and three
``ipa-helper`` processes make) and runs each block with ``DIR`` as its
working directory. A ``print(...)  # text`` line says what it must print.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ipa_client.local_network import LocalNetwork

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_python_blocks():
    assert BLOCKS


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("readme")
    (directory / "net").mkdir()
    with LocalNetwork(directory / "net", timeout_seconds=10):
        yield directory


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i + 1}" for i in range(len(BLOCKS))])
def test_readme_block_runs_as_written(block, workdir):
    done = subprocess.run(
        [sys.executable, "-c", block], cwd=workdir, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    expected = re.findall(r"^print\(.*\)\s+# (.*)$", block, flags=re.MULTILINE)
    assert expected, "a block says what it prints (a `print(...)  # output` line)"
    assert done.stdout.splitlines()[-len(expected) :] == expected
