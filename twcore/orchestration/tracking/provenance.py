"""Where a run came from: how it was asked for, the code it ran, and the libraries under it.

A run records this when it starts (and again at each resume) in its directory's
``provenance.json`` (a list, oldest first: the start, then each resume), under ``provenance`` in
``summary.json`` (the current process's) and in the W&B run's config::

    {"started_at": "2026-12-06T14:02:11+0000", "step": 0,
     "command": {"argv": ["twcore", "run", "seed=3"], "cwd": "/home/me/project"},
     "overrides": ["seed=3"], "config_file": null,
     "plugins": {"twcore": "0.9.0", "ew": "0.9.0", ...},
     "git": {"commit": "...", "dirty": false},
     "sources": {"twcore": {"distribution": "twcore", "version": "0.9.0",
                            "path": "/src/twcore", "commit": "...", "dirty": true}, ...},
     "libraries": {"torch": "2.13.0", "numpy": "...", ...},
     "python": "3.12.3", "platform": "Linux-...", "host": "node-1", "cuda": null}

``git`` is the working directory's work tree (``{}`` outside one); ``sources`` has the
twcore package and each plugin of the run (``method``, ``task``, ``model``): its distribution and
version, the folder of its project (where its ``pyproject.toml`` is, or its package), and — where
that folder is inside a git checkout — the checkout's commit and whether that folder has
uncommitted changes to tracked files (a package under ``site-packages`` is an installed copy:
no git state, even where the environment sits inside a checkout). Git is asked once per folder
and process: the code a process runs is what it imported. A launched data-parallel run's
processes record the command, overrides and config file that launched them
(:data:`COMMAND_VARIABLE`).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import os
import platform
import subprocess
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

import torch

from twcore.orchestration.config.compose import ComposedConfig
from twcore.orchestration.engine.summary import plugin_versions
from twcore.version import __version__

LIBRARIES = (
    "torch",
    "numpy",
    "scipy",
    "omegaconf",
    "pluggy",
    "gymnasium",
    "cvxpy",
    "wandb",
    "ray",
    "scikit-learn",
)
"""The libraries whose versions a run records (those installed)."""

INSTALLED_FOLDERS = frozenset({"site-packages", "dist-packages"})
"""A package under one of these is an installed copy: no git state, even inside a work tree."""

COMMAND_VARIABLE = "TWCORE_COMMAND"
"""Set by a launching process to its own command (JSON), so the processes it starts record it."""


def run_provenance(composed: ComposedConfig, *, step: int = 0) -> dict[str, Any]:
    """This process's provenance for a run of `composed` starting (or resuming) at `step`."""
    launcher = _launcher()
    return {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "step": step,
        "command": command(),
        "overrides": launcher.get("overrides", list(composed.overrides)),
        "config_file": launcher.get("config_file", composed.config_file),
        "plugins": plugin_versions(composed),
        "git": _git_state_once(Path.cwd(), scoped=False),
        "sources": code_sources(composed),
        "libraries": library_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": platform.node(),
        "cuda": torch.version.cuda,
    }


def _launcher() -> dict[str, Any]:
    """What the launching process recorded in :data:`COMMAND_VARIABLE` (``{}`` if none)."""
    text = os.environ.get(COMMAND_VARIABLE)
    if not text:
        return {}
    try:
        recorded = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return recorded if isinstance(recorded, dict) and "argv" in recorded else {}


def command() -> dict[str, Any]:
    """``{"argv": [...], "cwd": ...}`` of this process, or of the process that launched it."""
    launcher = _launcher()
    if launcher:
        return {"argv": launcher["argv"], "cwd": launcher.get("cwd")}
    argv = list(sys.argv)
    if argv and Path(argv[0]).name == "__main__.py":  # python -m twcore
        argv[0] = "twcore"
    return {"argv": argv, "cwd": os.getcwd()}


def command_environment(
    overrides: list[str] | None = None, config_file: str | None = None
) -> dict[str, str]:
    """The environment entry that makes launched processes record this process's command (and
    the overrides and config file it was given, where the processes get them another way)."""
    recorded: dict[str, Any] = dict(command())
    if overrides is not None:
        recorded.update(overrides=overrides, config_file=config_file)
    return {COMMAND_VARIABLE: json.dumps(recorded)}


def library_versions() -> dict[str, str]:
    """The installed version of each of :data:`LIBRARIES` (absent ones left out)."""
    return dict(_library_versions())


@cache
def _library_versions() -> tuple[tuple[str, str], ...]:
    found = []
    for name in LIBRARIES:
        try:
            found.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            continue
    return tuple(found)


def code_sources(composed: ComposedConfig) -> dict[str, dict[str, Any]]:
    """The twcore package and each plugin of the run: distribution, version, project folder,
    and (in a git checkout) its commit and dirty flag."""
    import twcore

    sources = {"twcore": source_entry(Path(inspect.getfile(twcore)), "twcore", __version__)}
    for section, registration in composed.plugins.items():
        try:
            where = Path(inspect.getfile(registration.cls))
        except (TypeError, OSError):  # a class defined interactively has no file
            where = None
        entry = source_entry(where, registration.source.distribution, registration.source.version)
        sources[section] = {"name": registration.name, **entry}
    return sources


def source_entry(
    module_file: Path | None, distribution: str | None, version: str | None
) -> dict[str, Any]:
    """One entry of ``sources``: distribution and version, and for the module's file its
    project folder and (a checkout's) git state."""
    entry: dict[str, Any] = {"distribution": distribution, "version": version}
    if module_file is None:
        return entry
    package = module_file.resolve().parent
    folder = project_folder(package)
    entry["path"] = str(folder)
    if not INSTALLED_FOLDERS.intersection(package.parts):  # a checkout, not an installed copy
        entry.update(_git_state_once(folder, scoped=True))
    return entry


def project_folder(package: Path) -> Path:
    """The nearest folder at or above `package` with a ``pyproject.toml``, not leaving a git
    work tree's root or an installed package's ``site-packages`` (then `package` itself)."""
    for folder in (package, *package.parents):
        if folder.name in INSTALLED_FOLDERS:
            break
        if (folder / "pyproject.toml").is_file():
            return folder
        if (folder / ".git").exists():
            break
    return package


def _git_state_once(folder: Path, *, scoped: bool) -> dict[str, Any]:
    """:func:`git_state`, asked once per folder and process (a copy each time)."""
    return dict(_remembered_git_state(folder, scoped))


@cache
def _remembered_git_state(folder: Path, scoped: bool) -> dict[str, Any]:
    return git_state(folder, scoped=scoped)


def git_state(directory: Path | None = None, *, scoped: bool = False) -> dict[str, Any]:
    """``{"commit": sha, "dirty": bool}`` of the git work tree holding `directory` (default:
    the working directory), or ``{}`` outside one (or without git). `scoped`: dirty only for
    uncommitted changes to tracked files under `directory`, else anywhere in the work tree."""
    where = str(directory or Path.cwd())
    commit = _git(where, "rev-parse", "HEAD")
    if commit is None:
        return {}
    scope = ["--", "."] if scoped else []
    status = _git(where, "status", "--porcelain", "--untracked-files=no", *scope)
    return {"commit": commit, "dirty": bool(status)}


def _git(where: str, *arguments: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", where, *arguments],
            capture_output=True,
            text=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
