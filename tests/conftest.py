"""Shared test settings: ``ipa query`` receipts go to a temporary state directory, never ~/.local/state.

gRPC's fork handlers are off in the test process, as in a helper (``ipa_helper/__init__.py``):
tests/helpers/test_siblings.py starts a local Ray cluster from it, whose GCS and raylet children
gRPC's handlers can abort between fork and exec. Set here, before any test module imports grpc.
"""

import os

import pytest

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")


@pytest.fixture(autouse=True)
def _state_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.getbasetemp() / "state"))
