"""Early stopping: end a run once its validation metric has not improved for a number of
evaluations (``early_stopping.patience``)."""

from __future__ import annotations

import math
from typing import Any

from twcore.contract.task import Task
from twcore.orchestration.config.schema import RunConfig
from twcore.orchestration.engine.best import selection_metric


class EarlyStopping:
    """Counts validation evaluations since the metric last improved by more than `min_delta`.

    Args:
        metric: the metric judged (the run's ``best_metric``, else the task's primary metric).
        mode: ``max`` if larger is better, ``min`` otherwise.
        patience: evaluations without improvement after which the run stops.
        min_delta: the least change that counts as an improvement.
    """

    def __init__(self, metric: str, mode: str, patience: int, min_delta: float = 0.0) -> None:
        self.metric, self.mode = metric, mode
        self.patience, self.min_delta = patience, min_delta
        self.best = -math.inf if mode == "max" else math.inf
        self.best_step: int | None = None
        self.waited = 0

    @classmethod
    def for_run(cls, run: RunConfig, task: Task) -> EarlyStopping | None:
        """What a run asks for (``early_stopping.patience`` > 0), or None."""
        config = run.early_stopping
        if config.patience == 0:
            return None
        metric, mode = selection_metric(run, task)
        return cls(metric, mode, config.patience, config.min_delta)

    def should_stop(self, step: int, metrics: dict[str, float]) -> bool:
        """Record the evaluation at `step`; whether the run should stop now."""
        value = metrics.get(self.metric)
        improved = (
            value is not None
            and math.isfinite(value)
            and (
                value > self.best + self.min_delta
                if self.mode == "max"
                else value < self.best - self.min_delta
            )
        )
        if improved:
            assert value is not None
            self.best, self.best_step, self.waited = float(value), step, 0
        else:
            self.waited += 1
        return self.waited >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "waited": self.waited}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_step = float(state["best"]), state["best_step"]
        self.waited = int(state["waited"])
