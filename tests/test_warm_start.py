"""Warm-started local workers (forked from one process that imported torch, W&B and twcore):
the same runs as fresh ``python -m twcore`` processes, each still its own process (exit code,
signals, environment, log), and a sweep that falls back to fresh processes when the zygote
cannot start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from twcore.orchestration.backends import SweepOptions, warm_start
from twcore.orchestration.backends.trial import _is_worker, worker_environment
from twcore.orchestration.backends.trial_callbacks import PARENT_ENV
from twcore.orchestration.backends.warm_start import LOST_CODE, WarmStarter
from twcore.orchestration.sweep import run_sweep

GRID = ["method=ew,famo", "task=mnist-multitask", "model=mlp", "steps=30", "eval_every=10"]


def _tensors(value, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint, by its path in the nested dicts and lists."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return {prefix: value} if torch.is_tensor(value) else {}
    found: dict[str, torch.Tensor] = {}
    for key, item in items:
        found.update(_tensors(item, f"{prefix}/{key}"))
    return found


def _sweep(tmp_path: Path, name: str, *, cold_start: bool) -> Path:
    options = SweepOptions(backend="local", workers=2, threads=1, cold_start=cold_start)
    result = run_sweep(
        [*GRID, "wandb.enabled=false", f"run_dir={tmp_path / name}"], options=options
    )
    assert [trial.status for trial in result.trials] == ["completed", "completed"]
    return result.sweep_dir


def test_warm_and_fresh_workers_train_the_same_bits_and_record_the_same_command(tmp_path):
    warm = _sweep(tmp_path, "warm", cold_start=False)
    cold = _sweep(tmp_path, "cold", cold_start=True)
    for trial in ("method-ew", "method-famo"):
        ours = _tensors(torch.load(warm / trial / "checkpoints/last.pt", weights_only=True))
        theirs = _tensors(torch.load(cold / trial / "checkpoints/last.pt", weights_only=True))
        assert ours.keys() == theirs.keys() and len(ours) > 10
        assert all(torch.equal(ours[key], theirs[key]) for key in ours), trial
        assert (warm / trial / "metrics.jsonl").read_text() == (
            cold / trial / "metrics.jsonl"
        ).read_text()
        summaries = [json.loads((d / trial / "summary.json").read_text()) for d in (warm, cold)]
        assert summaries[0]["metrics"] == summaries[1]["metrics"]
        assert summaries[0]["threads"]["threads"] == summaries[1]["threads"]["threads"] == 1
        commands = [
            json.loads((d / trial / "provenance.json").read_text())[0]["command"]["argv"]
            for d in (warm, cold)
        ]
        assert commands[0][0] == "twcore" and commands[0][1:] == [
            part.replace("/cold/", "/warm/") for part in commands[1][1:]
        ]
    assert "(forked warm)" in (warm / ".logs" / "method-ew.log").read_text()
    assert "(forked warm)" not in (cold / ".logs" / "method-ew.log").read_text()


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    environment = worker_environment(1)  # as a sweep's worker gets it (job_environment)
    environment.update({PARENT_ENV: str(os.getpid()), **extra})
    return environment


def test_a_warm_child_is_its_own_process_with_the_requests_environment_cwd_and_log(tmp_path):
    plugins = tmp_path / "on_path_only"
    plugins.mkdir()
    (plugins / "probe_module.py").write_text(
        "import os, sys, torch\n"
        "print('cwd', os.getcwd())\n"
        "print('marker', os.environ.get('PROBE_MARKER'))\n"
        "print('threads', torch.get_num_threads())\n"
        "print('session', os.getsid(0) == os.getpid())\n"
        "print('program', os.environ.get('WANDB_PROGRAM'))\n"
        "sys.stdout.flush()\n"
    )
    work = tmp_path / "work"
    work.mkdir()
    log = tmp_path / "child.log"
    here = os.getcwd()
    # Two threads where the zygote (and this test process) have one: the child sets its own.
    environment = _environment(
        tmp_path, PROBE_MARKER="42", PYTHONPATH=str(plugins), OMP_NUM_THREADS="2"
    )
    with WarmStarter() as starter:
        os.chdir(work)
        try:
            # --plugins imports the module from the request's PYTHONPATH, which the zygote
            # never had; an unknown key then makes the run a usage error (exit 2).
            child = starter.start(
                ["--plugins", "probe_module", "show", "no_such_key=1"], log, environment
            )
        finally:
            os.chdir(here)
        assert child.pid != os.getpid() and _is_worker(child.pid)
        assert child.wait(timeout=120) == 2
        assert child.poll() == 2
    text = log.read_text()
    assert f"cwd {work}" in text and "marker 42" in text and "threads 2" in text
    assert "session True" in text
    assert "program -m twcore.__main__" in text  # what W&B records for a fresh worker
    assert "twcore: error:" in text and "no_such_key" in text


def test_a_signal_reaches_only_its_warm_child_and_its_code_is_negative(tmp_path):
    with WarmStarter() as starter:
        environment = _environment(tmp_path)
        arguments = ["run", "-q", "steps=1000000", "checkpoint_every=0", "eval_every=0"]
        arguments.append("wandb.enabled=false")
        first = starter.start(
            [*arguments, f"run_dir={tmp_path / 'a'}"], tmp_path / "a.log", environment
        )
        second = starter.start(
            [*arguments, f"run_dir={tmp_path / 'b'}"], tmp_path / "b.log", environment
        )
        deadline = time.monotonic() + 120
        while not all((tmp_path / name / "metrics.jsonl").exists() for name in ("a", "b")):
            assert time.monotonic() < deadline  # both runs train (a signal before would end
            time.sleep(0.05)  # a child before its run, as test_sweep_backends checks)
        with pytest.raises(subprocess.TimeoutExpired):
            first.wait(timeout=0.5)
        first.kill()
        assert first.wait(timeout=60) == -signal.SIGKILL
        assert second.poll() is None  # the other worker, and the zygote, run on
        second.send_signal(signal.SIGINT)  # Ctrl-C as the sweep forwards it: a clean stop
        assert second.wait(timeout=120) == 130
        third = starter.start(["--version"], tmp_path / "c.log", environment)
        assert third.wait(timeout=60) == 0
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["status"] == "interrupted"


def test_a_child_whose_zygote_died_stops_and_is_reported_lost(tmp_path):
    starter = WarmStarter()
    try:
        run_dir = tmp_path / "run"
        child = starter.start(
            [
                "run",
                "-q",
                "steps=1000000",
                "checkpoint_every=0",
                "eval_every=0",
                "wandb.enabled=false",
                f"run_dir={run_dir}",
            ],
            tmp_path / "run.log",
            _environment(tmp_path),
        )
        deadline = time.monotonic() + 120
        while not (run_dir / "metrics.jsonl").exists() and not (run_dir / "config.yaml").exists():
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
        assert starter._zygote is not None
        starter._zygote.kill()  # the zygote dies; its child sees its parent gone and stops
        assert child.wait(timeout=120) == LOST_CODE and child.orphaned
        assert not starter.usable
        with pytest.raises(OSError):
            starter.start(["--version"], tmp_path / "x.log", _environment(tmp_path))
    finally:
        starter.close()
    deadline = time.monotonic() + 60
    while json.loads((run_dir / "summary.json").read_text()).get("status") == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "stopped"


def test_a_sweep_whose_zygote_cannot_start_runs_its_trials_as_fresh_processes(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(warm_start, "ZYGOTE_MODULE", "twcore.no_such_zygote")
    options = SweepOptions(backend="local", workers=2, threads=1)
    arguments = ["method=ew,famo", "steps=5", "eval_every=0", "wandb.enabled=false"]
    result = run_sweep([*arguments, f"run_dir={tmp_path / 's'}"], options=options)
    assert [trial.status for trial in result.trials] == ["completed", "completed"]
    assert capsys.readouterr().err.count("warm start failed") == 1
    logs = [
        (tmp_path / "s" / ".logs" / f"{name}.log").read_text()
        for name in ("method-ew", "method-famo")
    ]
    assert any("--- warm start failed" in log for log in logs)
    assert all(log.startswith(f"--- attempt 1: {sys.executable} -m twcore run") for log in logs)


def _zygote_of(pid: int) -> int | None:
    """The pid of the zygote process `pid` started, if one runs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid and b"backends.zygote" in command:
            return int(entry.name)
    return None


def test_a_trial_whose_zygote_dies_is_resumed_in_a_fresh_process(tmp_path, capsys):
    settings = ["steps=3000", "checkpoint_every=100", "eval_every=0", "wandb.enabled=false"]
    sweep_dir = tmp_path / "s"
    options = SweepOptions(backend="local", workers=1, threads=1, retries=1)
    results: list = []
    sweeping = threading.Thread(
        target=lambda: results.append(
            run_sweep([*settings, f"run_dir={sweep_dir}", "seed=3"], options=options)
        )
    )
    sweeping.start()
    checkpoint = sweep_dir / "trial" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        assert time.monotonic() < deadline and sweeping.is_alive()
        time.sleep(0.05)
    zygote = _zygote_of(os.getpid())
    assert zygote is not None
    os.kill(zygote, signal.SIGKILL)  # the worker sees its parent gone and stops, checkpointed
    sweeping.join(timeout=300)
    (result,) = results
    (trial,) = result.trials
    assert trial.status == "completed" and trial.attempts == 2
    log = (sweep_dir / ".logs" / "trial.log").read_text()
    assert log.count("(forked warm)") == 1 and " resume " in log.split("--- attempt 2:")[1]
    assert "the warm-start process ended" in capsys.readouterr().err
    summary = json.loads((sweep_dir / "trial" / "summary.json").read_text())
    assert summary["steps"] == 3000
