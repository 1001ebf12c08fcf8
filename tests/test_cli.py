"""The command line: plugins, show, sweeps with aggregated tables, compare."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest


def test_plugins_lists_name_kind_distribution_version_status(run_cli):
    result = run_cli("plugins")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "kind", "distribution", "version", "status", "default"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["ew"] == ["ew", "method", "twcore-method-ew", "0.1.0", "loaded", "yes"]
    assert rows["gradcos"] == ["gradcos", "method", "twcore-method-gradcos", "0.1.0", "loaded"]
    assert rows["mlp"][1:] == ["model", "twcore-model-mlp", "0.1.0", "loaded", "yes"]
    assert rows["toy-multitask"][1:] == ["task", "twcore-task-synthetic", "0.1.0", "loaded", "yes"]


def test_plugins_json_is_machine_readable(run_cli):
    rows = json.loads(run_cli("plugins", "--json").stdout)
    kinds = {r["name"]: r["kind"] for r in rows}
    assert kinds.items() >= {"ew": "method", "mlp": "model", "toy-multitask": "task"}.items()
    assert all(r["status"] == "loaded" for r in rows)


def test_show_lists_every_key_with_type_default_and_help(run_cli):
    result = run_cli("show", "method=ew", "model=mlp")
    assert result.returncode == 0
    assert "method 'ew' from twcore-method-ew 0.1.0" in result.stdout
    hidden = next(line for line in result.stdout.splitlines() if line.startswith("model.hidden"))
    assert hidden.split()[:3] == ["model.hidden", "list[int]", "[128,"]
    assert "widths of the shared hidden layers" in hidden
    run_keys = run_cli("show").stdout
    for key in ("seed", "steps", "optim.lr", "wandb.mode", "device"):
        assert f"\n{key} " in run_keys


def test_show_says_what_a_method_needs_of_a_task(run_cli):
    result = run_cli("show", "method=taskmet", "method=ldro", "method=ew")
    assert result.returncode == 0, result.stderr
    needs = [line.strip() for line in result.stdout.splitlines() if "needs:" in line]
    assert needs == [
        "needs: a decision layer — or — a main objective and at least one auxiliary objective, "
        "a validation split",
        "needs: at least 2 objectives",
        "needs: any task",
    ]
    # The run-level defaults a plugin suggests, from its class (only TaskMet has any here).
    from twcore.orchestration.registry import get_registry

    suggested = get_registry().get("method", "taskmet").cls.run_defaults
    shown = [line.strip() for line in result.stdout.splitlines() if "run defaults" in line]
    assert shown == [
        "run defaults it suggests (key=value still wins): "
        + ", ".join(f"{k}={v}" for k, v in suggested.items())
    ]


def test_show_of_an_unknown_kind_is_a_usage_error(run_cli):
    result = run_cli("show", "optimizer=adam")
    assert result.returncode == 2
    assert "write one of method=NAME, task=NAME, model=NAME" in result.stderr


def test_multirun_runs_the_product_and_aggregates_mean_and_std_over_seeds(run_cli, tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli(
        "run",
        "-m",
        "-q",
        "seed=0,1,2",
        "optim.lr=0.001,0.01",
        "steps=40",
        "wandb.enabled=false",
        f"run_dir={sweep_dir}",
    )
    assert result.returncode == 0, result.stderr
    trial_dirs = sorted(p.parent for p in sweep_dir.glob("*/summary.json"))
    assert len(trial_dirs) == 6
    summaries = [json.loads((d / "summary.json").read_text()) for d in trial_dirs]
    records = json.loads((sweep_dir / "results.json").read_text())["tables"][0]["rows"]
    assert [r["optim.lr"] for r in records] == ["0.001", "0.01"]
    for record in records:
        lr = float(record["optim.lr"])
        values = [
            s["metrics"]["test"]["avg_acc"] for s in summaries if s["config"]["optim"]["lr"] == lr
        ]
        assert record["avg_acc"]["n"] == 3
        assert record["avg_acc"]["mean"] == pytest.approx(statistics.fmean(values))
        assert record["avg_acc"]["std"] == pytest.approx(statistics.stdev(values))
        shown = f"{statistics.fmean(values):.4g} ± {statistics.stdev(values):.2g}"
        assert shown in result.stdout
    assert (
        "| optim.lr | main_acc | avg_acc | worst_acc | avg_loss | steps_per_s | model_updates | n |"
        in result.stdout
    )
    assert (sweep_dir / "results.md").read_text().count("\n| 0.0") == 2


def test_multirun_validates_every_combination_before_running(run_cli, tmp_path):
    result = run_cli(
        "run",
        "-m",
        "model=mlp",
        "model.hidden=[4],[8]",
        "model.activaton=relu",
        f"run_dir={tmp_path / 'sweep'}",
    )
    assert result.returncode == 2
    assert "unknown config key 'model.activaton'" in result.stderr
    assert not list(tmp_path.glob("sweep/*/summary.json"))


def test_compare_runs_every_installed_method_over_three_seeds(run_cli, tmp_path):
    result = run_cli(
        "compare", "-q", "steps=20", "wandb.enabled=false", f"run_dir={tmp_path / 'cmp'}"
    )
    assert result.returncode == 0, result.stderr
    assert "toy-multitask — test metrics, mean ± std over 3 seed(s)" in result.stdout
    assert "| ew |" in result.stdout
    assert f"runs written to {tmp_path / 'cmp'}" in result.stdout
    # One table row per method that fits the task, three seeds each.
    methods = [
        line for line in result.stdout.splitlines() if line.startswith("| ") and " ± " in line
    ]
    assert len(list(Path(tmp_path / "cmp").glob("*/summary.json"))) == 3 * len(methods)


def test_run_prints_metrics_and_where_the_run_was_written(run_cli, tmp_path):
    result = run_cli("run", "-q", "steps=10", "wandb.enabled=false", f"run_dir={tmp_path / 'r'}")
    assert result.returncode == 0
    assert "| split | main_acc | avg_acc | worst_acc | avg_loss |" in result.stdout
    assert f"run written to {tmp_path / 'r'}" in result.stdout


def test_a_terminal_shows_a_progress_bar_with_loss_and_eta(tmp_path):
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "twcore",
            "run",
            "steps=400",
            "wandb.enabled=false",
            f"run_dir={tmp_path / 'run'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=follower,
        stdin=subprocess.DEVNULL,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=120)
    os.close(leader)
    screen = b"".join(chunks).decode(errors="replace")
    assert process.returncode == 0
    assert "ew/toy-multitask s0" in screen
    assert "loss=" in screen
    assert "step/s" in screen and "<" in screen  # tqdm's rate and [elapsed<remaining]


def test_sigint_stops_a_sweep_keeping_the_completed_trials(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    sweep_dir = tmp_path / "sweep"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "twcore",
            "run",
            "-m",
            "-q",
            "seed=0,1,2",
            "wandb.enabled=false",
            f"run_dir={sweep_dir}",
            "steps=100000",
            "checkpoint_every=0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list(sweep_dir.glob("*/metrics.jsonl")):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "sweep stopped at trial 1 of 3" in err
    trials = json.loads((sweep_dir / "results.json").read_text())["trials"]
    assert [t["status"] for t in trials] == ["interrupted", "pending", "pending"]
    summary = json.loads(next(sweep_dir.glob("*/summary.json")).read_text())
    assert summary["status"] == "interrupted"


def test_the_cli_runs_in_process_with_a_registry_made_for_the_test(tmp_path, capsys):
    from twcore.orchestration.cli.main import main
    from twcore.orchestration.registry import PluginRegistry, PluginSource, use_registry
    from twcore.testing.reference import ReferencePlugins

    registry = PluginRegistry(autoload=False)
    registry.add_plugin(ReferencePlugins(), PluginSource("reference"))
    with use_registry(registry):
        code = main(
            [
                "run",
                "-q",
                "method=reference-method",
                "task=reference-task",
                "model=reference-model",
                "steps=3",
                "wandb.enabled=false",
                f"run_dir={tmp_path / 'run'}",
            ]
        )
        assert main(["run", "method=ew"]) == 2  # only the test's plugins are visible
    assert code == 0
    assert "unknown method 'ew'" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"


def test_a_dry_run_prints_the_checked_config_and_writes_nothing(tmp_path, capsys, monkeypatch):
    """``twcore run --dry-run``: the YAML a run would write as its config.yaml, composed and
    checked as a run checks it (a pairing that cannot run is still exit 2), nothing written;
    the printed YAML is a config file that composes to itself."""
    import yaml

    from twcore.orchestration.cli.main import main

    monkeypatch.chdir(tmp_path)
    arguments = ["seed=3", "method=gradcos", "optim.lr=0.01"]
    assert main(["run", "--dry-run", *arguments]) == 0
    printed = capsys.readouterr().out
    config = yaml.safe_load(printed)
    assert (config["seed"], config["method"]["name"], config["optim"]["lr"]) == (3, "gradcos", 0.01)
    assert config["task"]["name"] == "toy-multitask" and config["run_dir"] is None
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "again.yaml").write_text(printed)
    assert main(["run", "--dry-run", "--config", str(tmp_path / "again.yaml")]) == 0
    assert capsys.readouterr().out == printed
    assert main(["run", "--dry-run", "method=taskmet", "task=digits"]) == 2
    assert "method 'taskmet' cannot run on task 'digits'" in capsys.readouterr().err
