"""The twcore task conformance suite, adjusted for per-item decision tasks.

Decision tasks apply the model per item: ``spec.input_shape`` is one item's (F,), and a batch's
inputs are [B, n_items, F] (see :class:`twcore.contract.model.Model`). The core suite's
``test_batches_match_the_spec`` compares ``inputs.shape[1:]`` with the input shape, which holds
only for one-example-per-row tasks; this suite checks the per-item layout instead and keeps every
other test of :class:`twcore.testing.TaskConformance` unchanged. It also has helpers for
finite-difference checks of a decision layer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.testing import Harness, TaskConformance, registry_with
from twcore.testing.harness import resolve


class DecisionTaskConformance(TaskConformance):
    """:class:`TaskConformance` for tasks whose inputs are [B, n_items, *input_shape]."""

    def test_batches_match_the_spec(self) -> None:
        harness, batch = self._task_and_batch()
        spec = harness.components.task.spec
        item_dims = len(spec.input_shape)
        assert batch.inputs.dim() == 2 + item_dims, "inputs are not [B, n_items, *input_shape]"
        assert tuple(batch.inputs.shape[-item_dims:]) == tuple(spec.input_shape)
        items = batch.inputs.shape[1]
        for objective in spec.objectives:
            target = batch.targets[objective.target]
            assert tuple(target.shape) == (len(batch), items), (
                f"target '{objective.target}' is not [B, n_items]"
            )
        outputs = harness.components.model(batch.inputs)
        for head in spec.heads:
            assert tuple(outputs[head.name].shape) == (len(batch), items, head.size)


def directional_derivatives(
    layer: Any, batch: Batch, predictions: Tensor, direction: Tensor, *, step: float = 1e-6
) -> tuple[float, float]:
    """d/dt of the mean decision objective at predictions + t·direction, by autograd and by a
    central finite difference (use float64 tensors).

    Returns:
        (autograd, finite_difference).
    """

    def mean_objective(values: Tensor) -> Tensor:
        return layer.objective(layer.decide(values, batch), batch).mean()

    t = torch.zeros((), dtype=predictions.dtype, requires_grad=True)
    (autograd,) = torch.autograd.grad(mean_objective(predictions + t * direction), t)
    with torch.no_grad():
        ahead = mean_objective(predictions + step * direction)
        behind = mean_objective(predictions - step * direction)
    return float(autograd), float((ahead - behind) / (2 * step))


def as_double(batch: Batch) -> Batch:
    """`batch` with every floating-point tensor in float64."""

    def convert(value: Tensor) -> Tensor:
        return value.double() if value.is_floating_point() else value

    return Batch(
        inputs=convert(batch.inputs),
        targets={k: convert(v) for k, v in batch.targets.items()},
        context={k: convert(v) for k, v in batch.context.items()},
    )


def decision_harness(
    task: str,
    task_options: dict[str, Any] | None = None,
    *,
    model: str = "mlp",
    model_options: dict[str, Any] | None = None,
    **options: Any,
) -> Harness:
    """An in-memory run of the installed decision task `task` with ``ew`` and `model` (on CPU,
    W&B off); `task_options`/`model_options` fill their sections, `options` are dotted keys."""
    registry = registry_with(
        [resolve("task", task, task), resolve("method", "ew", "ew"), resolve("model", model, model)]
    )
    base: dict[str, Any] = {"method": "ew", "task": task, "model": model, "wandb.enabled": False}
    base.update({f"task.{k}": v for k, v in (task_options or {}).items()})
    base.update({f"model.{k}": v for k, v in (model_options or {}).items()})
    return Harness(registry, {**base, "device": "cpu", **options})
