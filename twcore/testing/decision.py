"""The conformance suite of a task's decision layer (the ``decision`` capability).

Subclass :class:`DecisionLayerConformance` in your tests with ``task`` set to your decision task
(a class or an installed name) and pytest collects its tests::

    class TestMyDecisionLayer(DecisionLayerConformance):
        task = ShortestPath
        task_options = {"grid": 5}

It checks what every decision method relies on (:mod:`twcore.contract.decision`): the task
declares the capabilities its layer offers; ``decide`` and ``objective`` return the documented
shapes for the head's output in its layout; the decisions' gradient matches central finite
differences (in float64); non-finite predictions are refused with ``ValueError``; and, for a
layer that solves exactly, the true values' exact decisions are the best under the true values
(higher is better), regret is never negative, the solver's decisions carry no gradient, and a
layer that says its objective is linear scores decisions as Σ_i y_i z_i.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.decision import (
    LAYOUTS,
    PER_ITEM,
    SolverDecisionLayer,
    check_true_decisions,
    decision_capabilities,
    regret,
)
from twcore.testing.conformance import _Plumbing


def as_double(batch: Batch) -> Batch:
    """`batch` with every floating-point tensor in float64."""

    def convert(value: Tensor) -> Tensor:
        return value.double() if value.is_floating_point() else value

    return Batch(
        inputs=convert(batch.inputs),
        targets={k: convert(v) for k, v in batch.targets.items()},
        context={k: convert(v) for k, v in batch.context.items()},
    )


def directional_derivative(
    layer: Any, batch: Batch, predictions: Tensor, direction: Tensor, *, step: float = 1e-6
) -> tuple[float, float]:
    """d/dt of the mean objective of ``decide(predictions + t·direction)`` at t = 0, by
    autograd and by a central finite difference (pass float64 tensors)."""

    def mean_objective(values: Tensor) -> Tensor:
        objective: Tensor = layer.objective(layer.decide(values, batch), batch)
        return objective.mean()

    t = torch.zeros((), dtype=predictions.dtype, requires_grad=True)
    (autograd,) = torch.autograd.grad(mean_objective(predictions + t * direction), t)
    with torch.no_grad():
        ahead = mean_objective(predictions + step * direction)
        behind = mean_objective(predictions - step * direction)
    return float(autograd), float((ahead - behind) / (2 * step))


class DecisionLayerConformance(_Plumbing):
    """Checks a task's decision layer; set ``task`` (and ``task_options``)."""

    task: ClassVar[str | type]
    batch_instances: ClassVar[int] = 16
    """Instances in the checked batch."""
    noise: ClassVar[float] = 0.05
    """Scale of the perturbation of the true values where gradients are checked."""
    finite_difference_step: ClassVar[float] = 1e-6
    gradient_rtol: ClassVar[float] = 1e-4

    def prediction_point(self, values: Tensor) -> Tensor:
        """Where in prediction space gradients are checked, from perturbed true values (or the
        model's predictions without a solver); override to keep it feasible (e.g. clamp)."""
        return values

    # -- helpers ------------------------------------------------------------------------------

    def _layer_and_batch(self) -> tuple[Any, Any, Batch, Tensor]:
        harness = self.harness(batch_size=self.batch_instances)
        task = harness.components.task
        assert task.decision is not None, "a task with the decision capability sets .decision"
        batch = next(harness.stream)
        outputs = harness.components.model(batch.inputs)
        return task, task.decision, batch, outputs[task.decision.head]

    def _point(self, layer: Any, batch: Batch, predictions: Tensor) -> Tensor:
        """float64 predictions in the head's layout: true values plus noise for a solver layer,
        else the model's predictions."""
        if not isinstance(layer, SolverDecisionLayer):
            return self.prediction_point(predictions.detach().double())
        truth = layer.true_values(batch).double()
        generator = torch.Generator().manual_seed(0)
        noise = torch.randn(truth.shape, generator=generator, dtype=truth.dtype)
        values = self.prediction_point(truth + self.noise * truth.std() * noise)
        return values.reshape(predictions.shape)

    # -- the checks ---------------------------------------------------------------------------

    def test_the_task_declares_what_its_layer_offers(self) -> None:
        task, layer, _, _ = self._layer_and_batch()
        assert layer.head in {head.name for head in task.spec.heads}
        assert decision_capabilities(layer) <= task.spec.capabilities
        if isinstance(layer, SolverDecisionLayer):
            assert layer.layout in LAYOUTS, f"layout {layer.layout!r} is not one of {LAYOUTS}"

    def test_decisions_and_objectives_have_the_documented_shapes(self) -> None:
        _, layer, batch, predictions = self._layer_and_batch()
        decisions = layer.decide(predictions, batch)
        assert decisions.shape[0] == len(batch) and torch.isfinite(decisions).all()
        objective = layer.objective(decisions, batch)
        assert objective.shape == (len(batch),) and torch.isfinite(objective).all()
        if not isinstance(layer, SolverDecisionLayer):
            return
        values = layer.values(predictions)
        assert values.dim() == 2 and values.shape[0] == len(batch), "values are not [B, n]"
        assert layer.true_values(batch).shape == values.shape
        if layer.layout == PER_ITEM:  # one prediction per item of each instance
            assert tuple(predictions.shape[:2]) == tuple(batch.inputs.shape[:2])
        else:
            assert predictions.dim() == 2 and batch.inputs.shape[0] == len(batch)
        solved = layer.solve(values.detach(), batch)
        assert solved.shape == decisions.shape and not solved.requires_grad

    def test_the_decision_gradient_matches_finite_differences(self) -> None:
        _, layer, batch, predictions = self._layer_and_batch()
        batch = as_double(batch)
        point = self._point(layer, batch, predictions)
        direction = torch.randn(point.shape, generator=torch.Generator().manual_seed(1))
        autograd, finite = directional_derivative(
            layer, batch, point, direction.double(), step=self.finite_difference_step
        )
        assert abs(autograd - finite) <= self.gradient_rtol * max(abs(finite), 1e-4), (
            f"autograd {autograd} against finite differences {finite}"
        )

    def test_non_finite_predictions_are_refused(self) -> None:
        _, layer, batch, predictions = self._layer_and_batch()
        bad = predictions.detach().clone()
        bad.view(-1)[0] = float("nan")
        try:
            layer.decide(bad, batch)
        except ValueError:
            pass
        else:
            raise AssertionError("decide() accepted NaN predictions; raise ValueError")
        if isinstance(layer, SolverDecisionLayer):
            try:
                layer.solve(layer.values(bad), batch)
            except ValueError:
                return
            raise AssertionError("solve() accepted NaN values; raise ValueError")

    def test_the_true_values_decide_best_and_regret_is_never_negative(self) -> None:
        _, layer, batch, predictions = self._layer_and_batch()
        if not isinstance(layer, SolverDecisionLayer):
            return
        truth = layer.true_values(batch)
        best = layer.objective(layer.solve(truth, batch), batch)
        generator = torch.Generator().manual_seed(2)
        for _ in range(5):  # random values, and the model's predictions
            noise = torch.randn(truth.shape, generator=generator, dtype=truth.dtype)
            values = truth + truth.std() * noise
            chosen = layer.objective(layer.solve(values, batch), batch)
            assert (chosen <= best + 1e-6 * (1 + best.abs())).all(), "higher must be better"
        losses = regret(layer, layer.values(predictions.detach()), batch)
        assert (losses >= -1e-6 * (1 + best.abs())).all()

    def test_stored_true_decisions_are_the_solvers_for_the_true_values(self) -> None:
        """A batch's ``context["true_decisions"]`` (z*(y), which the losses and the regret then
        read instead of solving) scores what the solver's decisions for the true values score
        (:func:`~twcore.contract.decision.check_true_decisions`)."""
        _, layer, batch, _ = self._layer_and_batch()
        if isinstance(layer, SolverDecisionLayer):
            check_true_decisions(layer, batch, "the checked batch's context")

    def test_a_linear_objective_is_the_dot_product_with_the_true_values(self) -> None:
        _, layer, batch, predictions = self._layer_and_batch()
        if not isinstance(layer, SolverDecisionLayer) or not layer.linear:
            return
        truth = layer.true_values(batch)
        for decisions in (
            layer.solve(layer.values(predictions.detach()), batch),
            layer.decide(predictions, batch).detach(),
        ):
            expected = (truth * decisions.reshape(truth.shape)).sum(dim=-1)
            torch.testing.assert_close(layer.objective(decisions, batch), expected)
