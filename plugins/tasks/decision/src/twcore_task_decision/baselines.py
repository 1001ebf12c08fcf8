"""Reference predictors for the sanity table and the tests: no training loop, no model plugin."""

from __future__ import annotations

import torch
from torch import Tensor

from twcore.contract.decision import PER_INSTANCE, RANDOM_DRAWS, random_predictions
from twcore_task_decision.decision_task import HEAD, DecisionTask


def least_squares_fit(task: DecisionTask) -> Tensor:
    """Closed-form linear fit y ≈ [x, 1] · θ on the training split, in float64 by
    ``torch.linalg.lstsq``: per item (θ [F + 1], pooling every item of every training instance,
    one linear model applied per item as the per-item models do), or per instance (θ
    [F + 1, n], one output per item, for a per-instance task)."""
    train = task.split("train")
    features = train.inputs.reshape(-1, train.inputs.shape[-1]).double()
    design = torch.cat([features, torch.ones(len(features), 1, dtype=features.dtype)], dim=1)
    if task.layout == PER_INSTANCE:
        return torch.linalg.lstsq(design, train.targets[HEAD].double()).solution
    targets = train.targets[HEAD].reshape(-1, 1).double()
    return torch.linalg.lstsq(design, targets).solution.squeeze(1)


def least_squares_predictions(task: DecisionTask, split: str) -> Tensor:
    """Predictions [N, n] of :func:`least_squares_fit` on `split`."""
    coefficients = least_squares_fit(task)
    inputs = task.split(split).inputs.double()
    predictions = inputs @ coefficients[:-1] + coefficients[-1]
    return predictions.to(task.split(split).targets[HEAD].dtype)


def random_ndq(task: DecisionTask, split: str, *, seed: int, draws: int = RANDOM_DRAWS) -> float:
    """Mean ndq over `draws` fresh draws of uniform predictions in the training-target range.

    With a seed other than the references' this is an independent estimate of ≈ 0.
    """
    targets = task.split(split).targets[HEAD]
    low, high = task.target_range
    draws_tensor = random_predictions(targets.shape, low, high, seed=seed, draws=draws)
    return sum(task.score(d.to(targets.dtype), split)["ndq"] for d in draws_tensor) / draws
