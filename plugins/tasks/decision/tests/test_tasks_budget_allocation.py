"""budget-allocation: feasible optimal allocations, the objective formula, channel-major items."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from twcore_task_decision.baselines import random_ndq
from twcore_task_decision.budget_allocation import BudgetAllocation, BudgetAllocationConfig
from twcore_task_decision.testing import (
    DecisionTaskConformance,
    decision_harness,
)

from twcore.contract.batch import Batch
from twcore.contract.errors import ConfigError
from twcore.orchestration.config.compose import compose
from twcore.testing import DecisionLayerConformance, Harness
from twcore.testing.decision import as_double, directional_derivative

SMALL = {"train_size": 64, "val_size": 32, "test_size": 200}


class TestBudgetAllocationConformance(DecisionTaskConformance):
    task = "budget-allocation"
    task_options = SMALL
    model = "mlp"
    model_options = {"hidden": [16]}


class TestBudgetAllocationDecisionLayer(DecisionLayerConformance):
    task = "budget-allocation"
    task_options = SMALL

    def prediction_point(self, values):
        return values.clamp(0.01, 0.99)  # reach probabilities (the solver clamps outside)


def _task(**options) -> BudgetAllocation:
    return BudgetAllocation(BudgetAllocationConfig(**{**SMALL, **options}))


def _harness(**options) -> Harness:
    return decision_harness("budget-allocation", SMALL, model_options={"hidden": [16]}, **options)


def _numpy_objective(z: np.ndarray, reach: np.ndarray, weights: np.ndarray) -> np.ndarray:
    missed = np.prod(1.0 - z[:, :, None] * reach, axis=1)  # [B, n]
    return (weights * (1.0 - missed)).sum(axis=1)


def test_data_shapes_ranges_and_seed():
    task = _task()
    data = task.split("test")
    assert tuple(data.inputs.shape) == (200, 50, 8)
    assert tuple(data.targets["y"].shape) == (200, 50)
    assert tuple(data.context["target_weights"].shape) == (200, 10)
    assert data.targets["y"].min() > 0 and data.targets["y"].max() < 1
    # generate_splits() is the data without the quality references (no solver calls).
    again = _task(budget=3.0).generate_splits()["train"].inputs
    other = _task(data_seed=1).generate_splits()["train"].inputs
    assert torch.equal(again, task.split("train").inputs)
    assert not torch.equal(other, task.split("train").inputs)


def test_extra_dimensions_dilute_the_features_and_leave_reach_and_weights_alone():
    """LODL's random extra features: the same instances, features of unit variance from which
    a least-squares fit explains less and less of the reach as dimensions are added."""

    def explained(features: torch.Tensor, reach: torch.Tensor) -> float:
        inputs = torch.cat([features.reshape(-1, 8), torch.ones(reach.numel(), 1)], 1).double()
        target = reach.reshape(-1, 1).double()
        residual = target - inputs @ torch.linalg.lstsq(inputs, target).solution
        return 1 - float(residual.var() / target.var())

    plain, diluted = _task().split("test"), _task(extra_dims=60).split("test")
    assert torch.equal(plain.targets["y"], diluted.targets["y"])
    assert torch.equal(plain.context["target_weights"], diluted.context["target_weights"])
    assert 0.8 < float(diluted.inputs.var(dim=(0, 1)).mean()) < 1.25
    # The signal's share of a feature's variance is L / (L + E) = 4 / 64.
    assert explained(plain.inputs, plain.targets["y"]) > 0.5
    assert explained(diluted.inputs, diluted.targets["y"]) < 0.15


def _numpy_gradient(z: np.ndarray, reach: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """∂obj/∂z_i = Σ_j w_j Y_ij Π_{k≠i} (1 − z_k Y_kj), in closed form [B, m]."""
    missed = 1.0 - z[:, :, None] * reach  # [B, m, n]
    others = np.stack(
        [np.prod(np.delete(missed, i, axis=1), axis=1) for i in range(z.shape[1])], axis=1
    )
    return (weights[:, None, :] * reach * others).sum(axis=2)


def test_training_decisions_are_feasible_kkt_points_of_the_smoothed_problem():
    # Training decisions maximise f(z) − (γ/2)‖z‖² (not concave in general), so optimality is
    # checked through the KKT conditions of the box-and-budget constraints with a closed-form
    # gradient: channels strictly inside (0, 1) share one marginal value ν, channels at 0 have
    # less, channels at 1 more.
    smoothing = 1.0
    task = _task(budget=2.0, smoothing=smoothing)
    data = task.split("test").index(slice(0, 50))
    with torch.no_grad():
        z = task.decision.decide(data.targets["y"], data).double().numpy()
    assert z.min() >= -1e-9 and z.max() <= 1 + 1e-9
    np.testing.assert_allclose(z.sum(axis=1), 2.0, atol=1e-9)
    reach = data.targets["y"].double().reshape(50, 5, 10).numpy()
    weights = data.context["target_weights"].double().numpy()
    gradient = _numpy_gradient(z, reach, weights) - smoothing * z
    inside = (z > 1e-6) & (z < 1 - 1e-6)
    assert (inside.sum(axis=1) >= 2).any(), "no interior decision: nothing to differentiate"
    tolerance = 1e-6 * np.abs(gradient).max()
    for row in range(50):
        free = gradient[row, inside[row]]
        level = free.mean() if free.size else None
        if level is not None:
            assert np.ptp(free) <= tolerance
        low, high = z[row] <= 1e-6, z[row] >= 1 - 1e-6
        if low.any() and high.any():
            assert gradient[row, high].min() >= gradient[row, low].max() - tolerance
        if level is not None:
            assert (gradient[row, low] <= level + tolerance).all()
            assert (gradient[row, high] >= level - tolerance).all()


def test_evaluation_decisions_are_whole_channels_no_feasible_point_beats():
    task = _task(budget=2.0)
    data = task.split("test").index(slice(0, 50))
    z = task.decide_for_evaluation(data.targets["y"], data).double().numpy()
    np.testing.assert_array_equal(np.sort(z, axis=1), np.tile([0, 0, 0, 1, 1], (50, 1)))
    reach = data.targets["y"].double().reshape(50, 5, 10).numpy()
    weights = data.context["target_weights"].double().numpy()
    best = _numpy_objective(z, reach, weights)
    # 2,000 random feasible allocations per instance (Dirichlet-like, then projected by rescaling
    # inside the box) never do better than the enumerated optimum.
    rng = np.random.default_rng(0)
    for _ in range(20):
        points = rng.dirichlet(np.ones(5), size=(100, 50)) * 2.0
        points = np.where(points.max(axis=-1, keepdims=True) <= 1, points, 0.4)
        values = np.stack([_numpy_objective(p, reach, weights) for p in points])
        assert (values <= best + 1e-12).all()


def test_decision_objective_equals_a_direct_numpy_computation():
    task = _task()
    data = task.split("test")
    z = torch.rand(len(data), 5, generator=torch.Generator().manual_seed(1))
    expected = _numpy_objective(
        z.double().numpy(),
        data.targets["y"].double().reshape(-1, 5, 10).numpy(),
        data.context["target_weights"].double().numpy(),
    )
    np.testing.assert_allclose(task.decision.objective(z, data).numpy(), expected, rtol=1e-5)


def test_items_are_channel_major_so_one_strong_channel_gets_the_whole_unit_budget():
    task = _task(budget=1.0)
    data = Batch(inputs=torch.zeros(4, 50, 8), context={"target_weights": torch.ones(4, 10)})
    reach = torch.full((4, 5, 10), 0.01)
    reach[:, 3, :] = 0.9  # channel 3 reaches every target; items 30..39
    z = task.decision.decide(reach.reshape(4, 50), data)
    torch.testing.assert_close(z, torch.eye(5)[3].expand(4, 5), atol=1e-3, rtol=0)


def test_true_reach_scores_ndq_of_exactly_one_and_random_near_zero():
    task = _task()
    metrics = task.score(task.split("test").targets["y"], "test")
    assert metrics["ndq"] == 1.0 and metrics["objective"] == metrics["dq_optimal"]
    assert abs(random_ndq(task, "test", seed=5)) < 0.06


def test_decision_gradient_matches_finite_differences():
    task = _task()
    batch = as_double(task.split("test").index(slice(0, 30)))
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(30, 50, generator=generator, dtype=torch.float64)
    predictions = (batch.targets["y"] + 0.05 * noise).clamp(0.01, 0.99)
    direction = torch.randn(30, 50, generator=generator, dtype=torch.float64)
    autograd, finite = directional_derivative(
        task.decision, batch, predictions, direction, step=1e-6
    )
    assert abs(autograd) > 1e-3  # interior decisions: a real, non-zero derivative
    assert autograd == pytest.approx(finite, rel=1e-4)


def test_decision_gradients_reach_the_model():
    harness = _harness()
    task, model = harness.components.task, harness.components.model
    batch = next(harness.stream)
    decisions = task.decision.decide(model(batch.inputs)["y"], batch)
    regret = -task.decision.objective(decisions, batch).mean()
    grads = torch.autograd.grad(regret, list(model.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"budget": 0.0}, r"^task\.budget=0\.0 must be > 0$"),
        ({"budget": -1.0}, r"^task\.budget=-1\.0 must be > 0$"),
        (
            {"budget": 6.0},
            r"^task 'budget-allocation' options are invalid: budget=6\.0 must be <= "
            r"num_channels=5 \(each channel takes at most 1\)$",
        ),
        ({"num_targets": 0}, r"^task\.num_targets=0 must be >= 1$"),
        ({"smoothing": -0.5}, r"^task\.smoothing=-0\.5 must be >= 0$"),
    ],
)
def test_invalid_options_are_one_line_config_errors(options, message):
    with pytest.raises(ConfigError, match=message) as error:
        _harness(**{f"task.{k}": v for k, v in options.items()})
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("task.feature_noise=-0.1", r"^task\.feature_noise=-0\.1 must be >= 0$"),
        ("task.latent_dim=0", r"^task\.latent_dim=0 must be >= 1$"),
        ("task.num_channels=0", r"^task\.num_channels=0 must be >= 1$"),  # not budget > it
        ("task.budget=nan", r"^task\.budget=nan must be a finite number > 0$"),
    ],
)
def test_the_composer_refuses_a_bad_option_naming_its_key(override, message):
    with pytest.raises(ConfigError, match=message):
        compose(["task=budget-allocation", override])


def test_a_budget_of_every_channel_and_exact_decisions_are_allowed():
    options = compose(["task=budget-allocation", "task.budget=5", "task.smoothing=0"])
    assert (options.sections["task"].budget, options.sections["task"].smoothing) == (5.0, 0.0)
