"""Base losses per objective kind, per example.

Tasks use these for their ``classification`` and ``regression`` objectives, and methods that
replace or meta-learn the loss (AdaLFL) use them as the base loss / meta-objective.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from twcore.contract.spec import ObjectiveKind


def cross_entropy_per_example(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of logits [B, C] against integer labels [B]; returns [B]."""
    return F.cross_entropy(logits, labels.long(), reduction="none")


def squared_error_per_example(predictions: Tensor, targets: Tensor) -> Tensor:
    """Mean squared error over output dims of predictions [B, D] (or [B]); returns [B].

    A [B] target against a [B, 1] prediction is accepted (single-output regression).
    """
    targets = align_regression_target(predictions, targets)
    error = (predictions - targets) ** 2
    return error.reshape(error.shape[0], -1).mean(dim=1)


def align_regression_target(predictions: Tensor, targets: Tensor) -> Tensor:
    """Reshape targets to the prediction's shape, allowing [B] targets for [B, 1] predictions."""
    if targets.shape == predictions.shape:
        return targets.to(predictions.dtype)
    if targets.numel() == predictions.numel():
        return targets.reshape(predictions.shape).to(predictions.dtype)
    raise ValueError(
        f"regression target of shape {tuple(targets.shape)} does not match "
        f"prediction of shape {tuple(predictions.shape)}"
    )


BASE_LOSSES = {
    ObjectiveKind.CLASSIFICATION: cross_entropy_per_example,
    ObjectiveKind.REGRESSION: squared_error_per_example,
}


def base_loss(kind: ObjectiveKind | str, predictions: Tensor, targets: Tensor) -> Tensor:
    """The base per-example loss [B] for an objective of `kind` (not defined for ``custom``)."""
    kind = ObjectiveKind(kind)
    if kind not in BASE_LOSSES:
        raise ValueError(f"objective kind '{kind}' has no base loss; tasks define custom losses")
    return BASE_LOSSES[kind](predictions, targets)
