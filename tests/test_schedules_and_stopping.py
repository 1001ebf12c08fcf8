"""Learning-rate schedules, early stopping and callbacks in the engine: closed forms, and
exactness across a stop and a resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import twcore
from twcore.contract.errors import ConfigError

COMMON = [
    "method=ew",
    "task=toy-multitask",
    "task.train_size=200",
    "task.val_size=100",
    "task.test_size=100",
    "batch_size=32",
    "wandb.enabled=false",
]


def _lrs(run_dir: Path) -> dict[int, float]:
    rows = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    return {row["step"]: row["train/lr"] for row in rows if "train/lr" in row}


def _expected(schedule: str, t: int, total: int, warmup: int, low: float) -> float:
    """The rate at step t (0-based), written out independently of twcore's code."""
    if t < warmup:
        return 0.1 * (t + 1) / warmup
    x = (t - warmup) / (total - warmup)
    shape = {
        "constant": 1.0,
        "cosine": low + (1 - low) * (1 + math.cos(math.pi * x)) / 2,
        "linear": low + (1 - low) * (1 - x),
        "step": 0.5 ** ((t - warmup) // 4),
    }[schedule]
    return 0.1 * shape


class StopAt(twcore.Callback):
    def __init__(self, step: int) -> None:
        self.step = step
        self.seen: list[tuple[int, str]] = []
        self.steps = 0

    def on_step_end(self, step, result) -> None:
        assert result.losses.shape == (4,)
        self.steps += 1

    def on_eval(self, step, split, metrics) -> None:
        self.seen.append((step, split))

    def should_stop(self, step: int) -> bool:
        return step == self.step


@pytest.mark.parametrize("schedule", ["constant", "cosine", "linear", "step"])
def test_a_schedule_sets_the_closed_form_rate_at_every_step(schedule: str, tmp_path: Path) -> None:
    options = [
        f"optim.schedule={schedule}",
        "optim.lr=0.1",
        "optim.warmup_steps=3",
        "optim.min_lr_ratio=0.2",
        "optim.step_size=4",
        "optim.gamma=0.5",
        "steps=15",
        "eval_every=0",
    ]
    twcore.run([*COMMON, *options, f"run_dir={tmp_path / 'run'}"])
    logged = _lrs(tmp_path / "run")
    assert sorted(logged) == list(range(1, 16))
    for step, rate in logged.items():
        assert rate == pytest.approx(_expected(schedule, step - 1, 15, 3, 0.2), rel=1e-12), step


def test_a_schedule_continues_exactly_after_a_stop_and_a_resume(tmp_path: Path) -> None:
    options = [
        "optim.schedule=cosine",
        "optim.lr=0.1",
        "optim.warmup_steps=2",
        "steps=12",
        "eval_every=4",
    ]
    whole = twcore.run([*COMMON, *options, f"run_dir={tmp_path / 'whole'}"])
    stopped = twcore.run(
        [*COMMON, *options, f"run_dir={tmp_path / 'parts'}"], callbacks=[StopAt(5)]
    )
    assert stopped.summary["status"] == "stopped" and stopped.summary["steps"] == 5
    resumed = twcore.resume(tmp_path / "parts")
    assert _lrs(tmp_path / "parts") == _lrs(tmp_path / "whole")
    assert resumed.metrics == whole.metrics
    one = torch.load(tmp_path / "whole/checkpoints/last.pt", weights_only=True)["model"]
    two = torch.load(tmp_path / "parts/checkpoints/last.pt", weights_only=True)["model"]
    assert all(torch.equal(one[k], two[k]) for k in one)


EARLY = ["optim.lr=0", "steps=100", "eval_every=2", "early_stopping.patience=3"]


def test_early_stopping_stops_after_patience_evaluations_without_improvement(
    tmp_path: Path,
) -> None:
    # With lr=0 the validation metric never changes: it improves at the first evaluation
    # (step 2) only, so evaluations at steps 4, 6 and 8 wait, and the run stops at step 8.
    result = twcore.run([*COMMON, *EARLY, f"run_dir={tmp_path / 'run'}"])
    assert result.summary["status"] == "early_stopped"
    assert result.summary["steps"] == 8
    stopping = result.summary["early_stopping"]
    assert stopping["best_step"] == 2 and stopping["evaluations_without_improvement"] == 3
    assert set(result.metrics) == {"val", "test"}  # the final evaluation still runs


def test_early_stopping_is_exact_across_a_stop_and_a_resume(tmp_path: Path) -> None:
    whole = twcore.run([*COMMON, *EARLY, f"run_dir={tmp_path / 'whole'}"])
    twcore.run([*COMMON, *EARLY, f"run_dir={tmp_path / 'parts'}"], callbacks=[StopAt(5)])
    resumed = twcore.resume(tmp_path / "parts")
    assert resumed.summary["status"] == "early_stopped"
    assert resumed.summary["steps"] == whole.summary["steps"] == 8
    assert resumed.summary["early_stopping"] == whole.summary["early_stopping"]
    assert resumed.metrics == whole.metrics


def test_callbacks_see_every_step_and_evaluation_and_can_stop_a_run(tmp_path: Path) -> None:
    watcher = StopAt(7)
    result = twcore.run(
        [*COMMON, "steps=20", "eval_every=3", f"run_dir={tmp_path / 'run'}"], callbacks=[watcher]
    )
    assert result.summary["status"] == "stopped"
    assert result.summary["error"] == "stopped by a callback at step 7"
    assert watcher.steps == 7
    assert watcher.seen == [(3, "val"), (6, "val")]
    state = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert state["step"] == 7
    finished = twcore.resume(tmp_path / "run")
    assert finished.summary["status"] == "completed" and finished.summary["steps"] == 20


def test_bad_stopping_settings_are_refused_before_training(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"eval_every=0 makes none"):
        twcore.run(
            [*COMMON, "early_stopping.patience=2", "eval_every=0", f"run_dir={tmp_path / 'a'}"]
        )
    with pytest.raises(ConfigError, match="callbacks cannot reach the 2 processes"):
        twcore.run([*COMMON, "nproc=2", f"run_dir={tmp_path / 'b'}"], callbacks=[StopAt(1)])
    with pytest.raises(TypeError, match=r"callbacks must be twcore\.Callback instances"):
        twcore.run([*COMMON, "steps=1", f"run_dir={tmp_path / 'c'}"], callbacks=[print])
    with pytest.raises(ConfigError, match=r"optim\.schedule"):
        twcore.run([*COMMON, "optim.schedule=cosin", f"run_dir={tmp_path / 'd'}"])


def test_an_early_stopped_trial_is_a_finished_one_in_a_sweep(tmp_path: Path, run_cli) -> None:
    common = [o for o in COMMON if not o.startswith("method=")]
    arguments = ["run", "-m", "method=ew,gradcos", *common, *EARLY, f"runs_root={tmp_path}"]
    first = run_cli(*arguments)
    assert first.returncode == 0, first.stderr[-2000:]
    (sweep_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("sweep-")]
    trials = json.loads((sweep_dir / "results.json").read_text())["trials"]
    assert [t["status"] for t in trials] == ["early_stopped", "early_stopped"]
    assert "| ew |" in first.stdout and "| gradcos |" in first.stdout  # both in the table
