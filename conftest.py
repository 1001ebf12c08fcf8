"""Test-wide settings: W&B offline and quiet, and every test in its own working directory so
runs never land in the repository."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_environment(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(workdir))
    monkeypatch.delenv("TWCORE_PLUGINS", raising=False)
    monkeypatch.delenv("TWCORE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
