"""Every metric a task reports declares its direction, and tables, model selection and the
tuner take it from the task, never from the metric's name."""

from __future__ import annotations

import pytest
import torch

from twcore.contract.errors import ConfigError
from twcore.contract.metrics import DIRECTIONS, supervised_metric_directions
from twcore.contract.spec import single_objective_spec
from twcore.orchestration.config.compose import compose
from twcore.orchestration.config.schema import RunConfig
from twcore.orchestration.config.validate import validate_run_config
from twcore.orchestration.engine.best import metric_goal
from twcore.orchestration.engine.components import build_task
from twcore.orchestration.registry import get_registry
from twcore.orchestration.report.table import Table
from twcore.orchestration.tune.driver import TuneOptions


def _task(name: str):
    return build_task(compose([f"task={name}"], registry=get_registry()))


@pytest.mark.parametrize("name", get_registry().names("task"))
def test_every_installed_task_declares_a_direction_for_every_metric(name):
    """Against what the task itself says elsewhere: its summary metrics and primary metric are
    declared, and the primary metric's direction is the spec's primary_mode. (That the names
    are exactly what ``evaluate`` returns is each task's conformance suite.)"""
    task = _task(name)
    directions = task.metric_directions
    assert directions is not None, f"task {name} declares no metric directions"
    assert set(directions.values()) <= set(DIRECTIONS)
    assert set(task.spec.summary_metrics) <= set(directions)
    assert directions[task.spec.primary_metric] == task.spec.primary_mode


def test_supervised_directions_follow_what_each_metric_measures():
    spec = single_objective_spec((3,), "label", 4, "classification")
    assert supervised_metric_directions(spec) == {
        "loss/label": "min",
        "acc/label": "max",
        "avg_loss": "min",
        "worst_loss": "min",
        "avg_acc": "max",
        "worst_acc": "max",
        "main_loss": "min",
        "main_acc": "max",
        "loss": "min",
        "acc": "max",
    }


def test_reported_but_unscored_metrics_are_declared_none():
    """The cases a name-based guess got wrong: θ's coordinates, an episode's length, the ends
    of the ndq scale, and CartPole's objective (−Bellman error: higher is better)."""
    assert _task("ldro-points").metric_directions["theta_x"] == "none"
    assert _task("gridworld-aux").metric_directions["length"] == "none"
    assert _task("portfolio").metric_directions["dq_optimal"] == "none"
    assert _task("cartpole-distractors").metric_directions["objective"] == "max"


def test_a_goal_takes_the_declared_direction_and_refuses_a_contradiction():
    task = _task("toy-multitask")
    assert metric_goal("avg_loss", task) == ("avg_loss", "min")
    assert metric_goal("min:avg_loss", task) == ("avg_loss", "min")
    assert metric_goal("", task) == (task.spec.primary_metric, task.spec.primary_mode)
    with pytest.raises(ConfigError, match=r"declares lower 'avg_loss' better; write min:avg_loss"):
        metric_goal("max:avg_loss", task)
    with pytest.raises(ConfigError, match=r"reports no metric 'avg_los'.*did you mean"):
        metric_goal("avg_los", task)
    points = _task("ldro-points")
    with pytest.raises(ConfigError, match=r"'theta_x' is reported, not scored"):
        metric_goal("theta_x", points)
    assert metric_goal("max:theta_x", points) == ("theta_x", "max")  # the user decides


def test_best_metric_and_tune_objective_refuse_a_contradiction_before_training(tmp_path, capsys):
    from twcore.orchestration.cli.main import main

    for argv in (
        ["run", "keep_best=true", "best_metric=max:avg_loss", f"run_dir={tmp_path / 'run'}"],
        ["tune", "optim.lr=loguniform(0.01,1)", "--objective", "max:avg_loss", "--trials", "1"],
    ):
        assert main(argv) == 2
        assert "declares lower 'avg_loss' better" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    TuneOptions(objective="avg_loss")  # a bare metric name is a valid objective
    with pytest.raises(ConfigError, match="write METRIC, max:METRIC or min:METRIC"):
        TuneOptions(objective="best:avg_loss")
    with pytest.raises(ConfigError, match="best_metric='max:' must be empty"):
        validate_run_config(RunConfig(best_metric="max:"))


def test_tables_rank_by_declared_direction_only():
    """``theta_x`` and an episode's ``length`` used to be bolded because a name was guessed;
    a column without a direction, or ``none``, is never marked."""
    table = Table(
        "t",
        ["method"],
        ["worst_loss", "theta_x", "success", "steps_per_s"],
        directions={"worst_loss": "min", "theta_x": "none", "success": "max"},
    )
    table.add(("a",), {"worst_loss": 2.0, "theta_x": 5.0, "success": 0.5, "steps_per_s": 9.0})
    table.add(("b",), {"worst_loss": 1.0, "theta_x": 1.0, "success": 0.25, "steps_per_s": 3.0})
    assert table.best_rows() == {
        "worst_loss": ("b",),
        "theta_x": None,
        "success": ("a",),
        "steps_per_s": None,
    }
    assert "| b | **1** | 1 | 0.25 | 3 | 1 |" in table.to_markdown()


def test_report_tables_rank_by_the_directions_recorded_in_summaries(tmp_path):
    """Directions are read from each run's summary.json, merged over a task's runs; a summary
    written before directions were recorded leaves a column unranked rather than guessed."""
    from twcore.orchestration.report.collect import RunRecord
    from twcore.orchestration.report.task_tables import report_tables

    def record(method: str, loss: float, directions):
        task = {"primary_metric": "loss", "summary_metrics": ["loss", "theta"]}
        if directions is not None:
            task["metric_directions"] = directions
        summary = {
            "config": {"method": {"name": method}, "task": {"name": "t"}, "seed": 0},
            "task": task,
            "metrics": {"test": {"loss": loss, "theta": loss}},
        }
        return RunRecord(tmp_path / method, summary, {"method": method})

    new = {"loss": "min", "theta": "none"}
    (table,) = report_tables([record("a", 1.0, None), record("b", 2.0, new)], ["method"])
    assert table.best_rows() == {"loss": ("a",), "theta": None}
    (old,) = report_tables([record("a", 1.0, None), record("b", 2.0, None)], ["method"])
    assert old.best_rows() == {"loss": None, "theta": None}
    assert "| **" not in old.to_markdown()  # no cell in bold


def test_a_primary_mode_against_the_declared_direction_is_refused():
    from twcore.contract.array_task import task_from_arrays

    generator = torch.Generator().manual_seed(0)
    task = task_from_arrays(
        torch.randn(20, 2, generator=generator),
        {"y": torch.randn(20, 1, generator=generator)},
        objectives={"y": "regression"},
        primary_metric=("mse", "max"),
    )(None)
    with pytest.raises(ConfigError, match="primary_mode 'max' but direction 'min'"):
        metric_goal("", task)
