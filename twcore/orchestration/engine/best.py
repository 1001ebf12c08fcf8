"""Keep the parameters with the best validation score (``keep_best=true``: early stopping by
model selection, the usual protocol of decision-focused and multitask benchmarks)."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from twcore.contract.errors import ConfigError, did_you_mean
from twcore.contract.task import Task
from twcore.orchestration.config.schema import RunConfig


def selection_metric(run: RunConfig, task: Task) -> tuple[str, str]:
    """``(metric, mode)`` a run selects and stops on and W&B summarises: ``best_metric``
    (:func:`metric_goal`), else the task's primary metric."""
    return metric_goal(run.best_metric, task)


def metric_goal(
    goal: str, task: Task, *, option: str = "best_metric", task_name: str = "the task"
) -> tuple[str, str]:
    """``(metric, mode)`` of a goal written ``NAME`` (the direction the task declares for it),
    ``max:NAME`` or ``min:NAME``; empty: the task's primary metric.

    ConfigError (naming `option`) for a metric the task does not report, a ``NAME`` whose
    direction the task does not declare or declares as ``none``, and a mode that contradicts
    the declared direction (``max:avg_loss`` would select the worst model without a word)."""
    if not goal:
        primary, mode = task.spec.primary_metric, task.spec.primary_mode
        declared = (task.metric_directions or {}).get(primary)
        if declared in ("max", "min") and declared != mode:
            raise ConfigError(
                f"{task_name}: its primary metric '{primary}' has primary_mode '{mode}' but "
                f"direction '{declared}' in metric_directions; make them agree"
            )
        return primary, mode
    mode, _, metric = goal.rpartition(":")
    names = task.metric_names
    if names is not None and metric not in names:
        raise ConfigError(
            f"{option}='{goal}': {task_name} reports no metric '{metric}'"
            f"{did_you_mean(metric, names, prefix=f'{mode}:' if mode else '')}; "
            f"its metrics: {', '.join(names)}"
        )
    declared = (task.metric_directions or {}).get(metric)
    if not mode:
        if declared in ("max", "min"):
            return metric, declared
        reason = (
            "is reported, not scored (direction none)"
            if declared == "none"
            else "has no declared direction"
        )
        raise ConfigError(
            f"{option}='{goal}': '{metric}' {reason}; write max:{metric} or min:{metric}"
        )
    if declared in ("max", "min") and mode != declared:
        better = "higher" if declared == "max" else "lower"
        raise ConfigError(
            f"{option}='{goal}': {task_name} declares {better} '{metric}' better; "
            f"write {declared}:{metric} (or just {metric})"
        )
    return metric, mode


class BestSnapshot:
    """The model parameters at the evaluation with the best value of one metric.

    Args:
        metric: the metric to select on (the task's primary metric).
        mode: ``max`` if larger is better, ``min`` otherwise.
    """

    def __init__(self, metric: str, mode: str) -> None:
        self.metric, self.mode = metric, mode
        self.value = -math.inf if mode == "max" else math.inf
        self.step: int | None = None
        self.parameters: dict[str, Any] = {}
        self.metrics: dict[str, float] = {}

    @classmethod
    def for_run(cls, run: RunConfig, task: Task) -> BestSnapshot | None:
        """The snapshot a run asks for (``keep_best``, ``best_metric``), or None."""
        if not run.keep_best:
            return None
        return cls(*selection_metric(run, task))

    def consider(self, step: int, metrics: dict[str, float], model: nn.Module) -> bool:
        """Snapshot `model` if `metrics` beats the best so far (ties keep the earlier one)."""
        if self.metric not in metrics:
            raise ConfigError(
                f"best_metric: the task reports no metric '{self.metric}'"
                f"{did_you_mean(self.metric, metrics)}; its metrics: {', '.join(metrics)}"
            )
        value = metrics[self.metric]
        if value is None or not math.isfinite(value):
            return False
        better = value > self.value if self.mode == "max" else value < self.value
        if better:
            self.value, self.step, self.metrics = float(value), step, dict(metrics)
            self.parameters = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return better

    def restore(self, model: nn.Module) -> None:
        """Load the best parameters into `model` (nothing if no evaluation was finite)."""
        if self.parameters:
            model.load_state_dict(self.parameters)

    def state_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "step": self.step,
            "parameters": self.parameters,
            "metrics": self.metrics,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value, self.step = float(state["value"]), state["step"]
        self.parameters = dict(state["parameters"])
        self.metrics = dict(state["metrics"])
