"""A run records how it was made: command, overrides, code (git state) and library versions;
its config.yaml starts a new run as it is."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import twcore
from twcore.orchestration.tracking.provenance import (
    COMMAND_VARIABLE,
    command,
    command_environment,
    git_state,
    project_folder,
    source_entry,
)

QUICK = ["steps=4", "eval_every=2", "checkpoint_every=2", "wandb.enabled=false"]


def _git(where: Path, *arguments: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(where), *arguments], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git work tree with a committed plugin folder and another folder."""
    root = tmp_path / "checkout"
    (root / "plugin").mkdir(parents=True)
    (root / "other").mkdir()
    (root / "plugin" / "code.py").write_text("x = 1\n")
    (root / "other" / "notes.txt").write_text("a\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    return root


def test_git_state_is_the_checkouts_commit_and_tracked_changes(checkout: Path) -> None:
    commit = _git(checkout, "rev-parse", "HEAD")
    plugin = checkout / "plugin"
    assert git_state(plugin, scoped=True) == {"commit": commit, "dirty": False}
    (checkout / "plugin" / "untracked.py").write_text("")  # untracked files are not changes
    assert git_state(plugin, scoped=True)["dirty"] is False
    (checkout / "other" / "notes.txt").write_text("b\n")  # a change elsewhere in the tree
    assert git_state(plugin, scoped=True)["dirty"] is False
    assert git_state(plugin)["dirty"] is True
    (checkout / "plugin" / "code.py").write_text("x = 2\n")
    assert git_state(plugin, scoped=True) == {"commit": commit, "dirty": True}
    assert git_state(checkout.parent) == {}  # not a work tree


def test_a_plugins_project_is_the_folder_with_its_pyproject(checkout: Path) -> None:
    package = checkout / "plugin" / "src" / "twcore_method_x"
    package.mkdir(parents=True)
    assert project_folder(package) == package  # no pyproject.toml up to the checkout
    (checkout / "plugin" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert project_folder(package) == checkout / "plugin"


def test_an_installed_copy_inside_a_checkout_has_no_git_state(checkout: Path) -> None:
    """A virtual environment inside a project's checkout: its packages are installed copies,
    not the project's code, so they get no commit (and their folder is the package's own)."""
    (checkout / "pyproject.toml").write_text("[project]\nname = 'project'\n")
    package = checkout / ".venv" / "lib" / "python3" / "site-packages" / "some_plugin"
    package.mkdir(parents=True)
    (package / "module.py").write_text("")
    _git(checkout, "add", "-f", ".")  # even if the copy were tracked
    _git(checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "venv")
    entry = source_entry(package / "module.py", "some-plugin", "1.0")
    assert entry == {"distribution": "some-plugin", "version": "1.0", "path": str(package)}
    mine = source_entry(checkout / "plugin" / "code.py", "project", "0.1")
    assert mine["path"] == str(checkout) and mine["commit"] == _git(checkout, "rev-parse", "HEAD")


def test_a_launched_process_records_the_launching_command(monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/somewhere/twcore/__main__.py", "run", "seed=3"])
    monkeypatch.delenv(COMMAND_VARIABLE, raising=False)
    mine = command()
    assert mine["argv"] == ["twcore", "run", "seed=3"]
    monkeypatch.setenv(COMMAND_VARIABLE, json.dumps({"argv": ["launcher"], "cwd": "/x"}))
    assert command() == {"argv": ["launcher"], "cwd": "/x"}
    recorded = json.loads(command_environment(["seed=3"], None)[COMMAND_VARIABLE])
    assert recorded == {
        "argv": ["launcher"],
        "cwd": "/x",
        "overrides": ["seed=3"],
        "config_file": None,
    }
    monkeypatch.setenv(COMMAND_VARIABLE, "not json")
    assert command() == mine


def test_every_start_and_resume_records_its_provenance(tmp_path: Path, monkeypatch) -> None:
    from twcore.orchestration.cli.main import main

    run_dir = tmp_path / "run"
    arguments = ["run", *QUICK, "optim.lr=0.01", f"run_dir={run_dir}", "--quiet"]
    monkeypatch.setattr(sys, "argv", ["twcore", *arguments])
    assert main(arguments) == 0
    (started,) = json.loads((run_dir / "provenance.json").read_text())
    assert started["command"] == {"argv": ["twcore", *arguments], "cwd": str(Path.cwd())}
    assert started["overrides"] == [*QUICK, "optim.lr=0.01", f"run_dir={run_dir}"]
    assert started["config_file"] is None and started["step"] == 0
    assert started["libraries"]["torch"] == torch.__version__
    assert started["libraries"]["numpy"] == importlib.metadata.version("numpy")
    sources = started["sources"]
    assert set(sources) == {"twcore", "method", "task", "model"}
    assert sources["method"]["name"] == "ew"
    assert sources["method"]["distribution"] == "twcore-method-ew"
    assert sources["method"]["version"] == importlib.metadata.version("twcore-method-ew")
    for source in sources.values():  # a checkout records its commit, an installed copy none
        folder = Path(source["path"])
        if "site-packages" in folder.parts:
            assert "commit" not in source, source
        else:
            assert source["commit"] == _git(folder, "rev-parse", "HEAD"), source
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["provenance"] == started

    resume = ["resume", str(run_dir), "steps=6", "--quiet"]
    monkeypatch.setattr(sys, "argv", ["twcore", *resume])
    assert main(resume) == 0
    first, resumed = json.loads((run_dir / "provenance.json").read_text())
    assert first == started
    assert resumed["step"] == 4 and resumed["overrides"] == ["steps=6"]
    assert resumed["command"]["argv"] == ["twcore", *resume]
    assert json.loads((run_dir / "summary.json").read_text())["provenance"] == resumed


def test_a_runs_config_starts_a_new_run_as_it_is(tmp_path: Path) -> None:
    first = twcore.run([*QUICK, "method=gradcos", "seed=2", f"run_dir={tmp_path / 'first'}"])
    config = first.run_dir / "config.yaml"
    again = twcore.run(config_file=config, overrides=[f"runs_root={tmp_path / 'runs'}"])
    assert again.run_dir.parent == tmp_path / "runs"
    before = {k: v for k, v in first.summary["config"].items() if k not in ("run_dir", "runs_root")}
    after = {k: v for k, v in again.summary["config"].items() if k not in ("run_dir", "runs_root")}
    assert after == before
    assert again.metrics == first.metrics  # the same configuration trains the same run
    (provenance,) = json.loads((again.run_dir / "provenance.json").read_text())
    assert provenance["config_file"] == str(config)
