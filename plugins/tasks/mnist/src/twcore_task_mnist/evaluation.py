"""Evaluation of tasks whose objectives are all classifications over labels that may be missing
(``-1``: the image is not in that objective's class set), whatever kind the objectives declare
for training (``custom`` when their training loss is weighted)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from twcore.contract.metrics import Direction, supervised_directions_of, supervised_metrics
from twcore.contract.spec import TaskSpec
from twcore.contract.task import TensorTask


@torch.no_grad()
def masked_classification_metrics(
    task: TensorTask,
    model: torch.nn.Module,
    split: str,
    *,
    device: torch.device,
    batch_size: int,
) -> dict[str, float]:
    """Every objective's mean cross-entropy and accuracy over the images labelled for it
    (label ≥ 0), with the supervised aggregates (:func:`supervised_metrics`)."""
    data = task.split(split)
    objectives = task.spec.objectives
    loss_sum = torch.zeros(len(objectives), dtype=torch.float64, device=device)
    correct = torch.zeros_like(loss_sum)
    count = torch.zeros_like(loss_sum)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(data), batch_size):
            chunk = data.index(slice(start, start + batch_size)).to(device)
            outputs = model(chunk.inputs)
            for k, objective in enumerate(objectives):
                labels = chunk.targets[objective.target]
                member = labels >= 0
                logits = outputs[objective.head][member]
                loss_sum[k] += F.cross_entropy(logits, labels[member], reduction="sum").double()
                correct[k] += (logits.argmax(dim=1) == labels[member]).double().sum()
                count[k] += member.sum()
    finally:
        model.train(was_training)
    count = count.clamp_min(1)
    names = task.spec.objective_names
    losses, accuracies = (loss_sum / count).tolist(), (correct / count).tolist()
    return supervised_metrics(
        task.spec,
        dict(zip(names, losses, strict=True)),
        dict(zip(names, accuracies, strict=True)),
        {},
    )


def classification_directions(spec: TaskSpec) -> Mapping[str, Direction]:
    """The directions of what :func:`masked_classification_metrics` returns."""
    every = dict.fromkeys(spec.objective_names, 0.0)
    return supervised_directions_of(supervised_metrics(spec, every, every, {}))
