"""The run engine: determinism, exact resume after SIGKILL, divergence, stops, run outputs."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import twcore
from twcore.contract.errors import ConfigError, DivergenceError, RunDirectoryError
from twcore.contract.method import Method, StepResult
from twcore.orchestration.config.compose import compose
from twcore.orchestration.engine.checkpoint import load_checkpoint
from twcore.orchestration.engine.components import build_task
from twcore.orchestration.registry import PluginRegistry, get_registry, use_registry

QUIET = ["wandb.enabled=false"]


def _run(run_dir: Path, *overrides: str):
    return twcore.run([*QUIET, f"run_dir={run_dir}", *overrides])


def test_same_config_twice_gives_identical_metrics(tmp_path):
    first = _run(tmp_path / "a", "steps=150", "seed=4", "eval_every=50")
    second = _run(tmp_path / "b", "steps=150", "seed=4", "eval_every=50")
    assert first.metrics == second.metrics
    other_seed = _run(tmp_path / "c", "steps=150", "seed=5", "eval_every=50")
    assert other_seed.metrics != first.metrics


def test_summary_has_the_documented_shape(tmp_path):
    result = _run(tmp_path / "run", "steps=20")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary == result.summary
    assert isinstance(summary["config"], dict) and summary["config"]["steps"] == 20
    assert set(summary["metrics"]) == {"val", "test"}
    for split in ("val", "test"):
        assert all(isinstance(v, float) for v in summary["metrics"][split].values())
        assert {"avg_acc", "worst_acc", "main_acc", "avg_loss"} <= set(summary["metrics"][split])
    assert summary["steps"] == 20
    assert summary["wall_time_s"] > 0 and summary["steps_per_s"] > 0
    assert summary["plugins"] == {
        "twcore": "0.1.0",
        "ew": "0.1.0",
        "toy-multitask": "0.1.0",
        "mlp": "0.1.0",
    }
    assert summary["status"] == "completed"
    assert (tmp_path / "run" / "config.yaml").exists()


def test_a_run_directory_holding_a_run_is_never_reused(tmp_path):
    _run(tmp_path / "run", "steps=2")
    before = (tmp_path / "run" / "summary.json").read_text()
    with pytest.raises(RunDirectoryError, match="already holds a run"):
        _run(tmp_path / "run", "steps=3")
    assert (tmp_path / "run" / "summary.json").read_text() == before


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"run ended early: {process.communicate()}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_a_run_killed_with_sigkill_resumes_to_the_same_final_metrics(tmp_path):
    overrides = ["steps=2500", "checkpoint_every=100", "eval_every=400", "seed=2", "log_every=10"]
    killed_dir = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "twcore", "run", "-q", *overrides, f"run_dir={killed_dir}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    checkpoint = killed_dir / "checkpoints" / "last.pt"
    _wait_for(checkpoint, process)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(checkpoint)["step"]
    assert 0 < killed_at < 2500
    assert json.loads((killed_dir / "summary.json").read_text())["status"] == "running"

    resumed = subprocess.run(
        [sys.executable, "-m", "twcore", "resume", "-q", str(killed_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert resumed.returncode == 0, resumed.stderr
    whole = twcore.run([*overrides, f"run_dir={tmp_path / 'whole'}"])
    summary = json.loads((killed_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["steps"] == 2500
    assert summary["metrics"] == whole.metrics, (
        f"resumed from the checkpoint of step {killed_at}: {summary['metrics']} against "
        f"{whole.metrics}; resumed run's stderr: {resumed.stderr[-2000:]}"
    )
    steps_logged = [
        r["step"]
        for r in map(json.loads, (killed_dir / "metrics.jsonl").open())
        if "train/loss/cls0" in r
    ]
    assert steps_logged == sorted(set(steps_logged)), "a step was logged twice after resume"
    assert steps_logged[-1] == 2500


def test_sigterm_stops_cleanly_with_a_checkpoint_and_the_run_resumes(tmp_path):
    run_dir = tmp_path / "run"
    overrides = ["steps=100000", "checkpoint_every=0", "seed=1", *QUIET]
    process = subprocess.Popen(
        [sys.executable, "-m", "twcore", "run", "-q", *overrides, f"run_dir={run_dir}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    _wait_for(run_dir / "metrics.jsonl", process)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "continue with `twcore resume" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    stopped_at = load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
    assert stopped_at == summary["steps"] > 0
    resumed = twcore.resume(run_dir, [f"steps={stopped_at + 50}"])
    assert resumed.summary["status"] == "completed"
    assert resumed.summary["steps"] == stopped_at + 50


def test_resume_can_train_a_finished_run_longer_with_the_same_result(tmp_path):
    whole = _run(tmp_path / "whole", "steps=120", "seed=3")
    _run(tmp_path / "short", "steps=70", "seed=3")
    longer = twcore.resume(tmp_path / "short", ["steps=120"])
    assert longer.metrics == whole.metrics


def test_a_non_finite_objective_stops_the_run_naming_step_and_objective(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(DivergenceError) as caught:
        _run(run_dir, "optim.name=sgd", "optim.lr=1e4", "checkpoint_every=1", "steps=200")
    error = caught.value
    assert error.step > 1 and error.objectives
    assert f"training diverged at step {error.step}: objective '{error.objectives[0]}' is" in str(
        error
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["error"] == str(error)
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert checkpoint["step"] < error.step
    assert f"(step {checkpoint['step']})" in str(error)
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values())


def test_divergence_on_the_command_line_is_one_line_with_exit_code_1(run_cli, tmp_path):
    result = run_cli(
        "run",
        "-q",
        "optim.name=sgd",
        "optim.lr=1e4",
        "steps=50",
        *QUIET,
        f"run_dir={tmp_path / 'run'}",
    )
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith("twcore: error: training diverged at step "), result.stderr
    assert "Traceback" not in result.stderr


def test_checkpoints_hold_no_arbitrary_objects(tmp_path):
    _run(tmp_path / "run", "steps=5")
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 5
    assert set(state) >= {
        "model",
        "optimizer",
        "method",
        "task",
        "stream",
        "rng",
        "context",
        "tracker",
    }


def test_evaluation_runs_every_eval_every_steps_on_validation(tmp_path):
    _run(tmp_path / "run", "steps=60", "eval_every=20", "log_every=1000")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    val_steps = [r["step"] for r in records if "val/avg_acc" in r]
    assert val_steps == [20, 40, 60]  # periodic, the last one being the final evaluation
    assert [r["step"] for r in records if "test/avg_acc" in r] == [60]


def test_unavailable_cuda_is_a_config_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(twcore.contract.errors.ConfigError, match="CUDA is not available"):
        _run(tmp_path / "run", "device=cuda", "steps=1")
    assert not (tmp_path / "run").exists()


def test_metrics_are_finite_numbers(tmp_path):
    result = _run(tmp_path / "run", "steps=10")
    assert all(math.isfinite(v) for split in result.metrics.values() for v in split.values())


def test_a_run_killed_before_its_first_checkpoint_restarts_from_zero(tmp_path):
    whole = _run(tmp_path / "whole", "steps=30", "seed=6")
    run_dir = tmp_path / "killed"
    _run(run_dir, "steps=30", "seed=6")
    (run_dir / "checkpoints" / "last.pt").unlink()  # as if killed before the first checkpoint
    resumed = twcore.resume(run_dir)
    assert resumed.metrics == whole.metrics
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    assert [r["step"] for r in lines if "train/loss/cls0" in r] == list(range(1, 31))


def test_resume_refuses_to_change_the_plugins(tmp_path):
    _run(tmp_path / "run", "steps=2")
    for override in ("method=ew", "task.name=toy-multitask", "model=mlp"):
        with pytest.raises(twcore.contract.errors.ConfigError, match="a resumed run keeps its"):
            twcore.resume(tmp_path / "run", [override])


def test_methods_build_extra_optimisers_of_the_runs_kind():
    from twcore.testing import Harness, registry_with

    harness = Harness(
        registry_with([]),
        {
            "method": "reference-method",
            "task": "reference-task",
            "model": "reference-model",
            "optim.name": "sgd",
            "optim.momentum": 0.5,
            "wandb.enabled": False,
        },
    )
    extra = torch.nn.Parameter(torch.zeros(3))
    optimizer = harness.components.context.make_optimizer([extra], lr=0.25)
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["lr"] == 0.25
    assert optimizer.param_groups[0]["momentum"] == 0.5


def _val_evaluations(run_dir: Path, metric: str) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r[f"val/{metric}"]) for r in records if f"val/{metric}" in r]


def test_keep_best_ends_with_the_parameters_of_the_best_validation_evaluation(tmp_path):
    # A learning rate high enough that validation accuracy goes up and down between evaluations.
    options = ["steps=60", "eval_every=5", "optim.lr=0.3"]
    plain = _run(tmp_path / "plain", *options)
    best = _run(tmp_path / "best", *options, "keep_best=true")
    metric = plain.summary["task"]["primary_metric"]  # main_acc, larger is better
    evaluations = _val_evaluations(tmp_path / "plain", metric)
    assert len({value for _, value in evaluations}) > 1
    assert "best_step" not in plain.summary
    # The final parameters count as a candidate too (their val metrics are plain's final ones).
    candidates = [*evaluations, (60, plain.metrics["val"][metric])]
    step, value = max(candidates, key=lambda c: (c[1], -c[0]))
    assert best.summary["best_step"] == step
    assert best.metrics["val"][metric] == value
    assert best.metrics["val"][metric] >= plain.metrics["val"][metric]


def test_keep_best_survives_a_resume_exactly(tmp_path):
    options = ["steps=40", "eval_every=5", "optim.lr=0.3", "keep_best=true"]
    whole = _run(tmp_path / "whole", *options)
    _run(tmp_path / "split", *options[1:], "steps=20")
    resumed = twcore.resume(tmp_path / "split", ["steps=40"])
    assert resumed.metrics == whole.metrics
    assert resumed.summary["best_step"] == whole.summary["best_step"]


def test_keep_best_can_judge_by_another_metric_and_mode(tmp_path):
    options = ["steps=40", "eval_every=5", "optim.lr=0.3"]
    plain = _run(tmp_path / "plain", *options)
    # avg_loss without a mode: the task declares lower avg_loss better.
    best = _run(tmp_path / "best", *options, "keep_best=true", "best_metric=avg_loss")
    candidates = [*_val_evaluations(tmp_path / "plain", "avg_loss")]
    candidates.append((40, plain.metrics["val"]["avg_loss"]))
    step, value = min(candidates, key=lambda c: (c[1], c[0]))
    assert best.summary["best_step"] == step
    assert best.metrics["val"]["avg_loss"] == value
    # The selected parameters are kept as checkpoints/best.pt (last.pt keeps the training state
    # a resume continues from): evaluated afresh they give the selected validation value.
    kept = load_checkpoint(tmp_path / "best" / "checkpoints" / "best.pt")
    assert (kept["step"], kept["metric"], kept["value"]) == (step, "avg_loss", value)
    composed = compose([*QUIET, *options], registry=get_registry())
    task = build_task(composed)
    model = composed.plugins["model"].cls(composed.sections["model"], task.spec)
    model.load_state_dict(kept["model"])
    again = task.evaluate(model, "val", device=torch.device("cpu"), batch_size=1024)
    assert again["avg_loss"] == pytest.approx(value, rel=1e-6)
    assert not (tmp_path / "plain" / "checkpoints" / "best.pt").exists()


def test_a_malformed_best_metric_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"best_metric=.best:mse. must be empty .* min:NAME"):
        _run(tmp_path / "run", "keep_best=true", "best_metric=best:mse")


class _UncertaintyWeighting(Method):
    """Learns a log-variance per objective in the run's own optimiser (a param group of its
    own): a method may add its parameters to ``ctx.optimizer``."""

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.log_variance = torch.zeros(ctx.spec.num_objectives, requires_grad=True)
        ctx.optimizer.add_param_group({"params": [self.log_variance]})

    def train_step(self, batch):
        losses = self.ctx.objective_losses(batch)
        self.ctx.optimizer.zero_grad(set_to_none=True)
        (losses * torch.exp(-self.log_variance) + self.log_variance).sum().backward()
        self.ctx.optimizer_step()
        return StepResult(losses=losses.detach(), weights=torch.exp(-self.log_variance).detach())

    def state_dict(self):
        return {"log_variance": self.log_variance.detach().clone()}

    def load_state_dict(self, state):
        with torch.no_grad():
            self.log_variance.copy_(state["log_variance"])


def test_a_methods_own_param_group_in_the_run_optimiser_resumes_exactly(tmp_path):
    """The group is added when the method is built, before a checkpoint is restored, so the
    optimiser's state (Adam's moments of the group included) comes back as it was."""
    with use_registry(PluginRegistry()):
        twcore.register("method", "uncertainty", _UncertaintyWeighting)
        common = ["method=uncertainty", "optim.name=adam", "wandb.enabled=false", "seed=4"]
        whole = twcore.run([*common, "steps=40", f"run_dir={tmp_path / 'whole'}"])
        twcore.run([*common, "steps=20", f"run_dir={tmp_path / 'split'}"])
        resumed = twcore.resume(tmp_path / "split", ["steps=40"])
    assert resumed.metrics == whole.metrics
    states = [load_checkpoint(tmp_path / d / "checkpoints" / "last.pt") for d in ("whole", "split")]
    assert torch.equal(states[0]["method"]["log_variance"], states[1]["method"]["log_variance"])
    assert not torch.equal(states[0]["method"]["log_variance"], torch.zeros(2))
    assert len(states[1]["optimizer"]["param_groups"]) == 2
