"""Plugins registered by your own code travel: named modules are imported by every worker,
resumed run and reproduction, with the same numbers on every backend; a plugin a worker could
not see is a one-line error before any trial starts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import twcore
from twcore.contract.errors import ConfigError
from twcore.orchestration.backends import SweepOptions
from twcore.orchestration.plugin_modules import PLUGIN_MODULES_ENV
from twcore.orchestration.registry import PluginRegistry, use_registry
from twcore.orchestration.sweep import run_sweep

FIXTURES = Path(__file__).parent / "fixtures" / "user_plugins"
MODULE = "twcore_user_example"
NOISY = "twcore_user_noisy"  # prints at import, as data scripts often do
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
    # setenv (not delenv) records the variable's absence, so the teardown restores it.
    monkeypatch.setenv(PLUGIN_MODULES_ENV, "")
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    monkeypatch.syspath_prepend(str(FIXTURES))
    for module in (MODULE, NOISY):
        sys.modules.pop(module, None)
    with use_registry(PluginRegistry()) as registry:
        yield registry
    for module in (MODULE, NOISY):
        sys.modules.pop(module, None)


def _metrics(sweep_dir: Path) -> dict:
    trials = json.loads((sweep_dir / "results.json").read_text())["trials"]
    summaries = {
        t["name"]: json.loads((Path(t["run_dir"]) / "summary.json").read_text()) for t in trials
    }
    return {name: summary["metrics"] for name, summary in summaries.items()}


@pytest.fixture(scope="module")
def serial_numbers(tmp_path_factory) -> dict:
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(PLUGIN_MODULES_ENV, "")
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


@pytest.mark.xdist_group("serial-numbers")  # one worker builds the module fixture
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


def test_a_named_module_that_prints_at_import_passes_the_workers_check(clean, tmp_path):
    twcore.import_plugins(MODULE, NOISY)
    options = SweepOptions(backend="local", workers=2, threads=1)
    grid = ["task=user-data", "model=user-trunk", "seed=0,1", "steps=5", "wandb.enabled=false"]
    result = run_sweep([*grid, f"run_dir={tmp_path / 's'}"], options=options)
    assert [t.status for t in result.trials] == ["completed"] * 2


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


def test_the_cli_flag_works_before_after_and_around_the_command(tmp_path):
    runs = [tmp_path / name for name in ("before", "after", "both")]
    common = ["task=user-data", "model=user-trunk", "steps=10", "wandb.enabled=false", "-q"]
    results = [
        _cli("--plugins", MODULE, "run", *common, f"run_dir={runs[0]}", cwd=FIXTURES),
        _cli("run", "--plugins", MODULE, *common, f"run_dir={runs[1]}", cwd=FIXTURES),
        _cli(
            "--plugins",
            NOISY,
            "run",
            "--plugins",
            MODULE,
            *common,
            f"run_dir={runs[2]}",
            cwd=FIXTURES,
        ),
    ]
    for result in results:
        assert result.returncode == 0, result.stderr
    summaries = [json.loads((d / "summary.json").read_text()) for d in runs]
    assert summaries[0]["metrics"] == summaries[1]["metrics"] == summaries[2]["metrics"]
    recorded = (runs[2] / "config.yaml").read_text()
    assert f"imported_plugin_modules:\n- {NOISY}\n- {MODULE}" in recorded


def test_the_installed_script_finds_a_module_in_the_working_directory(tmp_path):
    script = shutil.which("twcore", path=str(Path(sys.executable).parent))
    assert script is not None, "the twcore console script is not installed beside python"
    result = subprocess.run(
        [script, "--plugins", MODULE, "show", "task=user-data"],
        cwd=FIXTURES,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != PLUGIN_MODULES_ENV},
    )
    assert result.returncode == 0, result.stderr
    assert "task 'user-data' registered in this process by twcore_user_example" in result.stdout


def test_resume_never_imports_what_a_run_directory_names_but_says_what_to_name(tmp_path):
    run_dir = tmp_path / "run"
    common = ["task=user-data", "model=user-trunk", "steps=10", "wandb.enabled=false", "-q"]
    started = _cli("run", "--plugins", MODULE, *common, f"run_dir={run_dir}", cwd=FIXTURES)
    assert started.returncode == 0, started.stderr
    config = (run_dir / "config.yaml").read_text()
    assert f"imported_plugin_modules:\n- {MODULE}" in config and str(FIXTURES) in config
    # A tampered config.yaml naming a module that would run code: resume never imports it.
    marker = tmp_path / "imported"
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "evil_module.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    tampered = yaml.safe_load(config)
    tampered["plugin_modules"] = ["evil_module"]
    tampered["plugin_paths"] = [str(tmp_path / "evil")]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(tampered))
    refused = _cli("resume", str(run_dir), "steps=20", "-q", cwd=tmp_path)
    assert refused.returncode == 2
    assert not marker.exists()
    message = refused.stderr.strip().splitlines()
    assert len(message) == 1, message
    assert "unknown task 'user-data'" in message[0]
    assert f"resume with --plugins evil_module,{MODULE}" in message[0]
    assert f"found in {FIXTURES}" in message[0]
    (run_dir / "config.yaml").write_text(config)
    resumed = _cli(
        "resume",
        "--plugins",
        MODULE,
        str(run_dir),
        "steps=20",
        "-q",
        cwd=tmp_path,
        env={"PYTHONPATH": str(FIXTURES)},
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 20


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
