"""Prediction spaces: what TaskMet's metric measures, and what its task loss is, per kind of task.

- :class:`DecisionSpace` — tasks with the ``decision`` capability. The space is one instance's
  predictions on the decision head, d = items per instance; the residual is ŷ − y; the task loss
  is the decision regret −obj(y, z*(ŷ)) through the task's differentiable decision layer, on
  training instances (as in TaskMet); validation uses the task's evaluation decisions.
- :class:`ObjectiveSpace` — tasks with a main objective, auxiliary ones and a validation split.
  The space is the K objectives, each per-example loss a squared residual, so a diagonal metric
  is a learned per-example weighting of the objectives; the task loss is the main objective's
  loss on validation batches.

:func:`prediction_space` picks the first kind the task offers, in that order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.method import MethodContext
from twcore.contract.spec import Capability, Role
from twcore_method_taskmet.metric import Metric


class PredictionSpace(Protocol):
    """How TaskMet measures prediction errors and the downstream task loss on one kind of task.

    Attributes:
        dim: d, the dimension of the prediction space.
        outer_split: the split whose batches the task loss (outer objective) is computed on.
        labels: a name for each of the d coordinates (for logging), or None.
    """

    dim: int
    outer_split: str
    labels: list[str] | None

    def features(self, batch: Batch) -> Tensor:
        """The metric network's input [B, F]."""

    def inner_loss(
        self, metric: Metric, batch: Batch, params: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """Metric-weighted prediction loss per example [B] (with the graph to θ and φ)."""

    def task_loss(self, batch: Batch, params: Mapping[str, Tensor] | None = None) -> Tensor:
        """The downstream task loss (scalar, differentiable in θ) on `batch`."""

    def validation_loss(self) -> tuple[float, dict[str, float]]:
        """Task loss on the whole validation split, and the validation metrics."""


class DecisionSpace:
    """Predict-then-optimise tasks: residuals on the decision head, regret as the task loss."""

    outer_split = "train"
    labels = None

    def __init__(self, ctx: MethodContext, sample: Batch) -> None:
        if ctx.task.decision is None:
            raise ValueError(
                "DecisionSpace needs a task with the decision capability (a decision layer)"
            )
        self.ctx = ctx
        self.layer = ctx.task.decision
        self.head = self.layer.head
        self.target = next(o.target for o in ctx.spec.objectives if o.head == self.head)
        self.dim = int(sample.targets[self.target].shape[1:].numel())

    def features(self, batch: Batch) -> Tensor:
        return batch.inputs.flatten(1)

    def predictions(self, batch: Batch, params: Mapping[str, Tensor] | None = None) -> Tensor:
        return self.ctx.outputs(batch, params)[self.head].reshape(len(batch), self.dim)

    def inner_loss(
        self, metric: Metric, batch: Batch, params: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        residuals = self.predictions(batch, params) - batch.targets[self.target].flatten(1)
        return metric.quadratic(residuals)

    def task_loss(self, batch: Batch, params: Mapping[str, Tensor] | None = None) -> Tensor:
        decisions = self.layer.decide(self.predictions(batch, params), batch)
        return -self.layer.objective(decisions, batch).mean()

    def validation_loss(self) -> tuple[float, dict[str, float]]:
        metrics = _evaluate(self.ctx, "val")
        return -metrics["objective"], metrics


class ObjectiveSpace:
    """Main/auxiliary tasks: a (diagonal) metric over the objectives' per-example losses."""

    outer_split = "val"

    def __init__(self, ctx: MethodContext, sample: Batch) -> None:
        self.ctx = ctx
        self.dim = ctx.spec.num_objectives
        self.labels = list(ctx.spec.objective_names)
        self.main_index = ctx.spec.main_index

    def features(self, batch: Batch) -> Tensor:
        return batch.inputs.flatten(1)

    def inner_loss(
        self, metric: Metric, batch: Batch, params: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        losses = self.ctx.objective_losses(batch, params, per_example=True)  # [K, B]
        return metric.weigh(losses.transpose(0, 1))

    def task_loss(self, batch: Batch, params: Mapping[str, Tensor] | None = None) -> Tensor:
        return self.ctx.objective_losses(batch, params)[self.main_index]

    def validation_loss(self) -> tuple[float, dict[str, float]]:
        metrics = _evaluate(self.ctx, "val")
        return metrics["main_loss"], metrics


def prediction_space(ctx: MethodContext, sample: Batch) -> DecisionSpace | ObjectiveSpace:
    """The space of the task in `ctx` (decision tasks first, then main/auxiliary tasks)."""
    spec = ctx.spec
    if spec.has(Capability.DECISION):
        return DecisionSpace(ctx, sample)
    roles = {objective.role for objective in spec.objectives}
    if Role.MAIN in roles and Role.AUXILIARY in roles and spec.has(Capability.VALIDATION):
        return ObjectiveSpace(ctx, sample)
    raise ValueError(
        "taskmet needs a task with a decision layer, or with main and auxiliary objectives and "
        "a validation split"
    )


@torch.no_grad()
def _evaluate(ctx: MethodContext, split: str) -> dict[str, float]:
    return ctx.task.evaluate(ctx.model, split, device=ctx.device, batch_size=1024)
