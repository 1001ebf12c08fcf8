"""Tracking: what reaches W&B (read back from the offline run) and metrics.jsonl, and that a
W&B failure never stops training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from twcore_method_ew import EqualWeightingMethod

import twcore
from twcore.contract.hookspecs import hookimpl
from twcore.contract.media import Image, LinePlot
from twcore.contract.method import StepResult
from twcore.orchestration.registry import PluginRegistry, PluginSource
from twcore.orchestration.tracking.values import flatten_values
from twcore.orchestration.tracking.wandb_backend import WandbBackend
from twcore.orchestration.tracking.wandb_offline import find_offline_runs, read_offline_run


def test_offline_wandb_run_holds_config_per_step_losses_weights_and_evaluations(tmp_path):
    run_dir = tmp_path / "run"
    twcore.run(
        [
            f"run_dir={run_dir}",
            "steps=30",
            "eval_every=10",
            "wandb.group=grid-1",
            "wandb.tags=[baseline,toy]",
            "wandb.job_type=bench",
            "wandb.project=proj",
        ]
    )
    files = find_offline_runs(run_dir)
    assert len(files) == 1
    run = read_offline_run(files[0])
    # The offline-run-* folder (what `wandb sync` takes) reads the same; a folder of several
    # runs is refused with what to give instead.
    assert read_offline_run(files[0].parent).summary == run.summary
    with pytest.raises(FileNotFoundError, match=r"holds 0 run-\*\.wandb files; give a W&B"):
        read_offline_run(run_dir)
    assert (run.project, run.group, run.job_type, run.tags) == (
        "proj",
        "grid-1",
        "bench",
        ["baseline", "toy", "method:ew", "task:toy-multitask", "model:mlp", "seed:0"],
    )
    assert run.config["method"] == {"name": "ew", "objectives": []}
    assert run.config["steps"] == 30
    by_step: dict[int, dict] = {}
    for row in run.history:
        by_step.setdefault(row["_step"], {}).update(row)
    assert sorted(by_step) == list(range(1, 31))
    objectives = ["cls0", "cls1", "cls2", "reg0"]
    for step, row in by_step.items():
        for name in objectives:
            assert np.isfinite(row[f"train/loss/{name}"]), (step, name)
            assert row[f"train/weight/{name}"] == pytest.approx(0.25)
    for step in (10, 20, 30):
        assert 0 <= by_step[step]["val/avg_acc"] <= 1
    assert "test/worst_acc" in by_step[30]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert run.summary["test/avg_acc"] == pytest.approx(summary["metrics"]["test"]["avg_acc"])
    assert summary["wandb"]["run_id"] == run.run_id


def test_metrics_jsonl_mirrors_what_was_logged(tmp_path):
    twcore.run([f"run_dir={tmp_path / 'run'}", "steps=12", "log_every=4", "wandb.enabled=false"])
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    train_steps = [r["step"] for r in records if "train/loss/cls0" in r]
    assert train_steps == [4, 8, 12]
    assert not list((tmp_path / "run").glob("wandb"))


def test_wandb_mode_from_the_environment_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    result = twcore.run([f"run_dir={tmp_path / 'run'}", "steps=3"])
    assert result.summary["wandb"]["mode"] == "disabled"
    assert find_offline_runs(tmp_path / "run") == []


def test_unreachable_wandb_warns_and_the_run_still_completes(run_cli, tmp_path):
    result = run_cli(
        "run",
        "-q",
        "steps=20",
        f"run_dir={tmp_path / 'run'}",
        "wandb.mode=online",
        "wandb.init_timeout=5",
        env={
            "WANDB_API_KEY": "",
            "HOME": str(tmp_path),
            "WANDB_MODE": "online",
            "WANDB_BASE_URL": "http://127.0.0.1:9",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "twcore: warning: W&B could not start" in result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["wandb"]["error"]
    assert summary["metrics"]["test"]["avg_acc"] > 0


def test_wandb_failing_mid_run_warns_once_and_training_finishes(tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    original = WandbBackend.log

    def failing_log(self, values, step):
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError("No space left on device")
        original(self, values, step)

    monkeypatch.setattr(WandbBackend, "log", failing_log)
    result = twcore.run([f"run_dir={tmp_path / 'run'}", "steps=20"])
    assert result.summary["status"] == "completed"
    assert calls["n"] == 6  # dropped after the first failure
    assert capsys.readouterr().err.count("W&B could not log") == 1
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert sum('"train/loss/cls0"' in line for line in lines) == 20


class _MediaMethod(EqualWeightingMethod):
    """ew that also logs a heat map and a curve, as TaskMet and AdaLFL will."""

    def train_step(self, batch):
        result = super().train_step(batch)
        logs = {
            "metric": Image(np.eye(3), caption="Λ"),
            "curve": LinePlot([0.0, 0.5, 1.0], [1.0, 0.2, 0.0], title="learned loss"),
            "scalars": {"a": torch.tensor(2.0), "vector": torch.tensor([1.0, 3.0])},
        }
        return StepResult(result.losses, result.weights, logs)


class _MediaPlugin:
    @staticmethod
    @hookimpl
    def twcore_register_methods(register):
        register("media", _MediaMethod)


def test_images_curves_and_nested_values_reach_wandb_and_jsonl(tmp_path):
    registry = PluginRegistry()
    registry.add_plugin(_MediaPlugin(), PluginSource("media-test"))
    run_dir = tmp_path / "run"
    twcore.run([f"run_dir={run_dir}", "method=media", "steps=2"], registry=registry)
    run = read_offline_run(find_offline_runs(run_dir)[0])
    row = next(r for r in run.history if "method/metric" in r)
    assert row["method/metric"]["_type"] == "image-file"
    assert row["method/scalars/a"] == 2.0
    assert row["method/scalars/vector/1"] == 3.0
    assert any("method/curve_table" in key or "method/curve" in key for key in row)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    curve = next(r["method/curve"] for r in records if "method/curve" in r)
    assert curve == {"x": [0.0, 0.5, 1.0], "y": [1.0, 0.2, 0.0]}


def test_flatten_values_expands_dicts_and_vectors_and_refuses_other_types():
    flat = flatten_values({"a": {"b": torch.tensor(1.5)}, "v": torch.tensor([1.0, 2.0]), "n": 3})
    assert flat == {"a/b": 1.5, "v/0": 1.0, "v/1": 2.0, "n": 3}
    with pytest.raises(TypeError, match="cannot log 'x' of type str"):
        flatten_values({"x": "text"})
    with pytest.raises(ValueError, match="dim > 1"):
        flatten_values({"m": torch.eye(2)})


def test_a_wandb_run_is_named_tagged_and_summarised_the_way_a_team_reads_it(
    tmp_path, capsys, run_cli
):
    """The summary holds the best validation value of the primary metric and its step (across
    a resume), the final test metrics and the run's speed; the name is readable and unique per
    run directory; tags say method, task, model, seed and label; the console is captured; the
    config says which plugin versions and git commit ran; log_model uploads the checkpoint;
    the command prints how to upload the offline run."""
    from twcore.orchestration.cli.main import main

    run_dir = tmp_path / "run"
    common = ["task=toy-multitask", "eval_every=5", "label=mine", f"run_dir={run_dir}"]
    # The first part in its own process: W&B captures a real process's console.
    started = run_cli("run", *common, "steps=20", "wandb.log_model=last")
    assert started.returncode == 0, started.stderr
    assert main(["resume", str(run_dir), "steps=40", "--quiet"]) == 0
    printed = capsys.readouterr().out
    first, resumed = (read_offline_run(p) for p in find_offline_runs(run_dir))
    assert first.run_id == resumed.run_id  # one W&B run, continued
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    curve = [(r["step"], r["val/main_acc"]) for r in records if "val/main_acc" in r]
    best_step, best = max(curve, key=lambda pair: (pair[1], -pair[0]))  # the first of the best
    assert resumed.summary["best/val/main_acc"] == best
    assert resumed.summary["best/step"] == best_step
    after = max(value for step, value in curve if step > 20)
    assert resumed.summary["val/main_acc"] == after  # define_metric's max (of what it saw)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert resumed.summary["test/main_acc"] == summary["metrics"]["test"]["main_acc"]
    assert resumed.summary["run/steps"] == 40
    assert resumed.summary["run/steps_per_s"] == summary["steps_per_s"]

    assert first.name == resumed.name == summary["wandb"]["name"]
    assert first.name.startswith("mine/ew/toy-multitask/s0-")
    assert len(first.name.rsplit("-", 1)[1]) == 6
    assert first.tags == ["method:ew", "task:toy-multitask", "model:mlp", "seed:0", "label:mine"]
    (first_path, resumed_path) = find_offline_runs(run_dir)
    assert "step 5 val: main_acc=" in (first_path.parent / "files" / "output.log").read_text()
    provenance = resumed.config["provenance"]
    assert provenance["plugins"]["ew"] == summary["plugins"]["ew"]
    assert provenance == summary["provenance"]
    assert set(provenance["git"]) <= {"commit", "dirty"}
    for segment in (first, resumed):  # log_model=last: the checkpoint at each end
        (artifact,) = [a for a in segment.artifacts if a["type"] == "model"]
        assert artifact["name"] == f"model-{first.run_id}" and "last" in artifact["aliases"]
        assert artifact["paths"] == ["last.pt"]
    assert f"upload it: wandb sync {resumed_path.parent}" in printed

    other = tmp_path / "other"
    twcore.run([*common[:-1], f"run_dir={other}", "steps=5"])
    assert read_offline_run(find_offline_runs(other)[0]).name != first.name  # unique per run


def test_log_model_best_needs_keep_best(tmp_path):
    from twcore.contract.errors import ConfigError

    with pytest.raises(ConfigError, match=r"wandb\.log_model=best .* set keep_best=true"):
        twcore.run([f"run_dir={tmp_path / 'r'}", "steps=2", "wandb.log_model=best"])


def test_a_transaction_log_read_while_being_written_is_not_complete(tmp_path):
    """W&B writes its log while a run finishes; a prefix of a complete log (a header, a chunk or
    a record cut anywhere) never raises, and one cut before its last record is not complete."""
    from twcore.orchestration.tracking.wandb_offline import is_complete

    twcore.run([f"run_dir={tmp_path / 'run'}", "steps=3"])
    (path,) = find_offline_runs(tmp_path / "run")
    data = path.read_bytes()
    assert is_complete(path)
    partial = tmp_path / "partial.wandb"
    for cut in range(0, len(data), max(1, len(data) // 300)):
        partial.write_bytes(data[:cut])
        complete = is_complete(partial)  # never raises
        assert not complete or cut > len(data) // 2, cut
