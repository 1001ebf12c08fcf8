"""Test-wide settings: W&B offline and quiet, every test in its own working directory so runs
never land in the repository, and prepared task data cached in a directory private to the test
session, signed with a key in another such directory (never the user's cache or config)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_data_cache(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TWCORE_CACHE_DIR", str(tmp_path_factory.mktemp("data-cache")))
        patch.setenv("TWCORE_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
        yield


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
    monkeypatch.delenv("TWCORE_EXCLUDE_PLUGINS", raising=False)
