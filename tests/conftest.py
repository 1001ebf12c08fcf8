"""Fixtures shared by the core tests."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    """Folder of fixture plugin distributions and files."""
    return FIXTURES


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python -m twcore ARGS`` in a subprocess; returns the completed process."""

    def run(
        *args: str,
        extra_path: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        environment = dict(os.environ)
        environment.update(env or {})
        if extra_path is not None:
            environment["PYTHONPATH"] = os.pathsep.join(
                [str(extra_path), environment.get("PYTHONPATH", "")]
            ).rstrip(os.pathsep)
        return subprocess.run(
            [sys.executable, "-m", "twcore", *args],
            capture_output=True,
            text=True,
            env=environment,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    return run


def entry_points_in(path: Path) -> list[importlib.metadata.EntryPoint]:
    """The ``twcore`` entry points of the distributions found in `path`."""
    found = []
    for distribution in importlib.metadata.distributions(path=[str(path)]):
        found.extend(distribution.entry_points.select(group="twcore"))
    return found


@pytest.fixture
def fixture_entry_points(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], list]:
    """Entry points of a fixture folder, with the folder importable for the test."""

    def load(folder: str) -> list[importlib.metadata.EntryPoint]:
        path = FIXTURES / folder
        monkeypatch.syspath_prepend(str(path))
        return entry_points_in(path)

    return load
