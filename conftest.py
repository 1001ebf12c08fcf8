"""Test-wide settings: W&B offline and quiet, every test in its own working directory so runs
never land in the repository, and prepared task data cached in a directory private to the test
session, signed with a key in another such directory (never the user's cache or config), and
one torch thread per process unless OMP_NUM_THREADS says otherwise. The suite runs in one
pytest-xdist worker per usable core (``-n auto`` in pyproject's addopts; ``-n 0`` runs it in
this process)."""

from __future__ import annotations

import os

import pytest
import torch

from twcore.orchestration.engine.threads import usable_cores

MOST_WORKERS = 8
"""More workers than this buy little for a suite of a few minutes, and each holds its own torch,
data cache and subprocesses."""


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per core this process may use (its affinity and cgroup quota,
    as twcore counts cores everywhere), at most :data:`MOST_WORKERS`. Each test computes with
    one torch thread, so one worker per core keeps every core busy without oversubscribing."""
    return min(usable_cores(), MOST_WORKERS)


@pytest.fixture(autouse=True, scope="session")
def _private_data_cache(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TWCORE_CACHE_DIR", str(tmp_path_factory.mktemp("data-cache")))
        patch.setenv("TWCORE_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
        # One torch thread per process unless the caller chose: the suite runs subprocesses
        # beside itself on few cores, where more threads wait on each other (and runs' thread
        # choice stays out of the busy-machine branch, whose warning would join the stderr
        # the tests read).
        threads = os.environ.get("OMP_NUM_THREADS", "1")
        patch.setenv("OMP_NUM_THREADS", threads)
        # ... and this process computes with as many as the runs it starts (a plain loop and
        # an engine run compared bit for bit must round alike).
        previous = torch.get_num_threads()
        torch.set_num_threads(int(threads))
        yield
        torch.set_num_threads(previous)


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
