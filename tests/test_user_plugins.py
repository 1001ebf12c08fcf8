"""Plugins registered by your own code travel: named modules are imported by every worker,
resumed run and reproduction, with the same numbers on every backend; a plugin a worker could
not see is a one-line error before any trial starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import twcore
from twcore.contract.errors import ConfigError
from twcore.orchestration.backends import SweepOptions
from twcore.orchestration.plugin_modules import PLUGIN_MODULES_ENV
from twcore.orchestration.registry import PluginRegistry, use_registry
from twcore.orchestration.sweep import run_sweep

FIXTURES = Path(__file__).parent / "fixtures" / "user_plugins"
MODULE = "twcore_user_example"
GRID = [
    "task=user-data",
    "model=user-trunk",
    "method=ew,gradcos",
    "seed=0,1",
    "steps=30",
    "eval_every=15",
    "wandb.enabled=false",
]


@pytest.fixture
def clean(monkeypatch):
    """A fresh registry and environment: what a test names or registers is forgotten after."""
    monkeypatch.delenv(PLUGIN_MODULES_ENV, raising=False)
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    monkeypatch.syspath_prepend(str(FIXTURES))
    sys.modules.pop(MODULE, None)
    with use_registry(PluginRegistry()) as registry:
        yield registry
    sys.modules.pop(MODULE, None)


def _metrics(sweep_dir: Path) -> dict:
    trials = json.loads((sweep_dir / "results.json").read_text())["trials"]
    summaries = {
        t["name"]: json.loads((Path(t["run_dir"]) / "summary.json").read_text()) for t in trials
    }
    return {name: summary["metrics"] for name, summary in summaries.items()}


@pytest.fixture(scope="module")
def serial_numbers(tmp_path_factory) -> dict:
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv(PLUGIN_MODULES_ENV, raising=False)
        monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
        monkeypatch.syspath_prepend(str(FIXTURES))
        sys.modules.pop(MODULE, None)
        with use_registry(PluginRegistry()):
            twcore.import_plugins(MODULE)
            directory = tmp_path_factory.mktemp("serial") / "sweep"
            result = run_sweep([*GRID, f"run_dir={directory}"], options=SweepOptions(threads=1))
        sys.modules.pop(MODULE, None)
    assert [t.status for t in result.trials] == ["completed"] * 4
    return _metrics(result.sweep_dir)


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_in_process_plugins_give_the_serial_numbers_on_every_backend(
    clean, tmp_path, serial_numbers, backend
):
    if backend == "ray":
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    twcore.import_plugins(MODULE)
    options = SweepOptions(backend=backend, workers=2, threads=1)
    result = run_sweep([*GRID, f"run_dir={tmp_path / backend}"], options=options)
    assert [t.status for t in result.trials] == ["completed"] * 4
    assert _metrics(result.sweep_dir) == serial_numbers


def test_a_plugin_registered_outside_a_named_module_is_refused_before_any_trial(clean, tmp_path):
    twcore.register("task", "unnamed-data", clean.get("task", "toy-multitask").cls)
    with pytest.raises(ConfigError, match="task 'unnamed-data' was registered by 'tests") as error:
        run_sweep(
            ["task=unnamed-data", "seed=0,1", "steps=5", f"run_dir={tmp_path / 's'}"],
            options=SweepOptions(backend="local", threads=1),
        )
    assert "--plugins MODULE" in str(error.value)
    assert not list((tmp_path / "s").glob("*/config.yaml"))  # no trial started


def test_a_worker_that_cannot_import_a_named_module_is_refused_before_any_trial(
    clean, tmp_path, monkeypatch
):
    twcore.import_plugins(MODULE)
    monkeypatch.setenv("PYTHONPATH", "")  # the workers lose the module's directory
    with pytest.raises(ConfigError, match="a local worker could not load the plugins") as error:
        run_sweep(
            [*GRID, f"run_dir={tmp_path / 's'}"], options=SweepOptions(backend="local", threads=1)
        )
    assert "No module named 'twcore_user_example'" in str(error.value)
    assert not list((tmp_path / "s").glob("*/config.yaml"))


def _cli(*arguments: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    environment.pop(PLUGIN_MODULES_ENV, None)
    return subprocess.run(
        [sys.executable, "-m", "twcore", *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def test_a_missing_plugin_module_is_a_one_line_exit_2_error(tmp_path):
    result = _cli("sweep", "--plugins", "no_such_module", *GRID, "--backend", "local", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "twcore: error: plugin module 'no_such_module' could not be imported: "
        "ModuleNotFoundError: No module named 'no_such_module'; name a module importable from "
        "the current directory or PYTHONPATH"
    ]
    assert not list(tmp_path.rglob("config.yaml"))


def test_the_cli_flag_works_before_or_after_the_command_and_resume_needs_no_flag(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    common = ["task=user-data", "model=user-trunk", "steps=10", "wandb.enabled=false", "-q"]
    before = _cli("--plugins", MODULE, "run", *common, f"run_dir={first}", cwd=FIXTURES)
    after = _cli("run", "--plugins", MODULE, *common, f"run_dir={second}", cwd=FIXTURES)
    assert before.returncode == 0, before.stderr
    assert after.returncode == 0, after.stderr
    summaries = [json.loads((d / "summary.json").read_text()) for d in (first, second)]
    assert summaries[0]["metrics"] == summaries[1]["metrics"]
    # From another directory, without --plugins: the run recorded its modules and their place.
    resumed = _cli("resume", str(first), "steps=20", "-q", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((first / "summary.json").read_text())["steps"] == 20


def test_reproduce_runs_a_named_modules_grid_and_report_reads_it_without_plugins(tmp_path):
    listed = _cli("reproduce", "--plugins", MODULE, "--list", cwd=FIXTURES)
    assert listed.returncode == 0, listed.stderr
    assert "user-grid" in listed.stdout
    out = tmp_path / "reproduction"
    ran = _cli(
        "reproduce",
        "--plugins",
        MODULE,
        "--quick",
        "--only",
        "user-grid",
        "--out",
        str(out),
        "wandb.enabled=false",
        cwd=FIXTURES,
    )
    assert ran.returncode == 0, ran.stderr
    sweep_dirs = [p.parent for p in out.rglob("results.json")]
    assert sweep_dirs
    report = _cli(
        "report", *map(str, sweep_dirs), "--no-wandb", "--out", str(tmp_path / "r"), cwd=tmp_path
    )
    assert report.returncode == 0, report.stderr
    assert "user-data" in (tmp_path / "r" / "report.md").read_text()
