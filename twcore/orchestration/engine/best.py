"""Keep the parameters with the best validation score (``keep_best=true``: early stopping by
model selection, the usual protocol of decision-focused and multitask benchmarks)."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from twcore.contract.errors import ConfigError, did_you_mean
from twcore.contract.spec import TaskSpec
from twcore.orchestration.config.schema import RunConfig


def selection_metric(run: RunConfig, spec: TaskSpec) -> tuple[str, str]:
    """``(metric, mode)`` a run selects and stops on and W&B summarises: ``best_metric``
    (``max:NAME``/``min:NAME``), else the task's primary metric."""
    if run.best_metric:
        mode, metric = run.best_metric.split(":", 1)
        return metric, mode
    return spec.primary_metric, spec.primary_mode


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
    def for_run(cls, run: RunConfig, spec: TaskSpec) -> BestSnapshot | None:
        """The snapshot a run asks for (``keep_best``, ``best_metric``), or None."""
        if not run.keep_best:
            return None
        return cls(*selection_metric(run, spec))

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
