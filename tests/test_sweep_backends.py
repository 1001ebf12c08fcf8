"""Sweeps on the serial, local and Ray backends: same numbers, crash recovery, skipping
completed trials, Ctrl-C, and bad options."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from twcore.orchestration.backends import SweepOptions
from twcore.orchestration.cli.main import main
from twcore.orchestration.sweep import run_sweep

GRID = [
    "method=ew,gradcos",
    "task=toy-multitask,mnist-aux",
    "seed=0,1",
    "steps=60",
    "eval_every=30",
    "wandb.enabled=false",
]


def _numbers(sweep_dir: Path) -> dict:
    """Every table cell's values (not the timing column), from the sweep's results.json."""
    tables = json.loads((sweep_dir / "results.json").read_text())["tables"]
    cells = {}
    for table in tables:
        for row in table["rows"]:
            key = (table["title"], row["method"])
            cells[key] = {
                metric: value["values"]
                for metric, value in row.items()
                if isinstance(value, dict) and metric != "steps_per_s"
            }
    return cells


def _sweep(tmp_path: Path, name: str, **options) -> Path:
    result = run_sweep(
        [*GRID, f"run_dir={tmp_path / name}"], options=SweepOptions(threads=1, **options)
    )
    assert [t.status for t in result.trials] == ["completed"] * 8
    return result.sweep_dir


@pytest.fixture(scope="module")
def sequential(tmp_path_factory) -> dict:
    return _numbers(_sweep(tmp_path_factory.mktemp("serial"), "sweep", backend="serial"))


@pytest.mark.xdist_group("sequential-sweep")  # one worker builds the module fixture
def test_local_backend_gives_the_numbers_of_a_sequential_sweep(tmp_path, sequential) -> None:
    sweep_dir = _sweep(tmp_path, "local", backend="local", workers=2)
    assert _numbers(sweep_dir) == sequential
    assert len(sequential) == 4 and all(len(v["main_acc"]) == 2 for v in sequential.values())
    config = (sweep_dir / "method-gradcos_task-mnist-aux_seed-1" / "config.yaml").read_text()
    assert "group: local" in config
    assert "- method:gradcos" in config and "- task:mnist-aux" in config
    assert "- seed:1" in config


@pytest.mark.xdist_group("sequential-sweep")  # one worker builds the module fixture
def test_ray_backend_on_a_local_cluster_gives_the_same_numbers(tmp_path, sequential) -> None:
    pytest.importorskip("ray")
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    sweep_dir = _sweep(tmp_path, "ray", backend="ray", workers=2)
    assert _numbers(sweep_dir) == sequential
    assert not ray.is_initialized()  # the cluster the sweep started is stopped again


def test_a_rerun_sweep_skips_completed_trials(tmp_path, capsys) -> None:
    arguments = ["sweep", "method=ew,gradcos", "steps=20", "wandb.enabled=false"]
    arguments += [f"run_dir={tmp_path / 'sweep'}", "-q"]
    assert main([*arguments, "--backend", "local"]) == 0
    summary = tmp_path / "sweep" / "method-ew" / "summary.json"
    # Each trial's line says, as it finishes, how long it took and its primary test metric.
    recorded = json.loads(summary.read_text())
    line = f"method=ew: completed ({recorded['wall_time_s']:.1f} s, test main_acc="
    assert line + f"{recorded['metrics']['test']['main_acc']:.4g})" in capsys.readouterr().err
    written = summary.stat().st_mtime_ns
    assert main([*arguments, "--backend", "local"]) == 0
    assert "(2 already complete)" in capsys.readouterr().err
    assert summary.stat().st_mtime_ns == written


def _start_sweep(tmp_path: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "twcore",
            "sweep",
            "--backend",
            "local",
            "--workers",
            "1",
            "--threads",
            "1",
            "wandb.enabled=false",
            f"run_dir={tmp_path / 'sweep'}",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def _wait_for(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)


STARTS = pytest.mark.parametrize("start", [[], ["--cold-start"]], ids=["forked-warm", "cold-start"])


@STARTS
def test_a_killed_worker_is_retried_and_resumed_from_its_checkpoint(tmp_path, start) -> None:
    settings = ["steps=1500", "checkpoint_every=200", "eval_every=500", "seed=4"]
    process = _start_sweep(tmp_path, "--retries", "1", *start, *settings)
    trial = tmp_path / "sweep" / "trial"
    checkpoint = trial / "checkpoints" / "last.pt"
    pid_file = tmp_path / "sweep" / ".workers" / "trial.pid"
    _wait_for(lambda: checkpoint.exists() and pid_file.exists(), process)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the worker dies mid-run
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "after 2 attempts" in err
    (record,) = json.loads((tmp_path / "sweep" / "results.json").read_text())["trials"]
    assert record["status"] == "completed" and record["attempts"] == 2
    log = (tmp_path / "sweep" / ".logs" / "trial.log").read_text()
    assert "attempt 2:" in log and " resume " in log
    assert log.count("(forked warm)") == (0 if start else 2)
    resumed = json.loads((trial / "summary.json").read_text())
    assert resumed["steps"] == 1500
    # Resuming lost nothing: the metrics equal an uninterrupted run's, on the worker's one
    # thread (float sums differ in the last bits between thread counts).
    whole = tmp_path / "whole"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["run", "-q", "wandb.enabled=false", f"run_dir={whole}", *settings]) == 0
    finally:
        torch.set_num_threads(threads)
    assert resumed["metrics"] == json.loads((whole / "summary.json").read_text())["metrics"]


@STARTS
def test_ctrl_c_stops_local_workers_cleanly_keeping_completed_trials(tmp_path, start) -> None:
    process = _start_sweep(tmp_path, *start, "seed=0,1,2", "steps=100000", "checkpoint_every=0")
    _wait_for(lambda: list((tmp_path / "sweep").glob("*/metrics.jsonl")), process)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    trials = json.loads((tmp_path / "sweep" / "results.json").read_text())["trials"]
    assert [t["status"] for t in trials] == ["interrupted", "pending", "pending"]
    summary = json.loads((tmp_path / "sweep" / "seed-0" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert (tmp_path / "sweep" / "seed-0" / "checkpoints" / "last.pt").exists()


def test_ctrl_c_while_warm_workers_still_import_stops_the_waiting_trial(tmp_path) -> None:
    """The first trial waits for the forking process's imports (seconds); one Ctrl-C then
    reaches its worker the moment it is forked, and nothing runs on."""
    process = _start_sweep(tmp_path, "seed=0,1", "steps=100000", "checkpoint_every=0")
    log = tmp_path / "sweep" / ".logs" / "seed-0.log"
    deadline = time.monotonic() + 120
    while not log.exists():  # written just before the worker is asked for
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=180)
    assert process.returncode == 130, err
    trials = json.loads((tmp_path / "sweep" / "results.json").read_text())["trials"]
    assert [t["status"] for t in trials] == ["interrupted", "pending"]
    assert "(forked warm)" in log.read_text()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--backend", "cluster"],
            "--backend 'cluster' is not a backend; valid: serial, local, ray",
        ),
        (["--backend", "locale"], "did you mean 'local'"),
        (["--workers", "0"], "--workers 0: must be at least 1"),
        (["--retries", "-1"], "--retries -1: must be 0 or more"),
    ],
)
def test_bad_backend_options_are_one_line_errors(tmp_path, capsys, flags, message) -> None:
    code = main(["sweep", "seed=0,1", f"run_dir={tmp_path / 's'}", *flags])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_serial_sweep_shows_each_trials_progress_unless_quiet(tmp_path, capsys) -> None:
    arguments = ["sweep", "seed=0,1", "steps=20", "wandb.enabled=false"]
    assert main([*arguments, f"run_dir={tmp_path / 'loud'}"]) == 0
    assert "[ew/toy-multitask s1] step 20 test:" in capsys.readouterr().err
    assert main([*arguments, f"run_dir={tmp_path / 'quiet'}", "-q"]) == 0
    assert "step 20 test:" not in capsys.readouterr().err
