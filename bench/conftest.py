"""Lets the benchmarks import ``bench/mpc.py`` as ``mpc``, and registers the ``slow`` marker."""

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: 10^6-row shuffle and sort benchmarks; deselect with -m 'not slow'"
    )
