"""The twcore task conformance suite, adjusted for per-item decision tasks.

Decision tasks apply the model per item: ``spec.input_shape`` is one item's (F,), and a batch's
inputs are [B, n_items, F] (see :class:`twcore.contract.model.Model`). The core suite's
``test_batches_match_the_spec`` compares ``inputs.shape[1:]`` with the input shape, which holds
only for one-example-per-row tasks; this suite checks the per-item layout instead and keeps every
other test of :class:`twcore.testing.TaskConformance` unchanged. The decision layer's own suite
is :class:`twcore.testing.DecisionLayerConformance`.
"""

from __future__ import annotations

from typing import Any

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
