"""Shared test settings: ``ipa query`` receipts go to a temporary state directory, never ~/.local/state."""

import pytest


@pytest.fixture(autouse=True)
def _state_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.getbasetemp() / "state"))
