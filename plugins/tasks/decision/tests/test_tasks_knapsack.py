"""knapsack: the DP against enumeration, the relaxation against an LP solver and finite
differences, PyEPO's generator, and the task's conformance in the per-instance layout."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from twcore_task_decision.baselines import random_ndq
from twcore_task_decision.knapsack import Knapsack, KnapsackConfig
from twcore_task_decision.solvers.knapsack import soft_knapsack, solve_knapsack

from twcore.testing import DecisionLayerConformance, TaskConformance
from twcore.testing.decision import directional_derivative

SMALL = {"num_items": 10, "train_size": 64, "val_size": 32, "test_size": 64, "capacity": 15.0}


class TestKnapsackConformance(TaskConformance):
    task = "knapsack"
    task_options = SMALL
    model = "mlp"
    model_options = {"hidden": [8]}


class TestKnapsackDecisionLayer(DecisionLayerConformance):
    task = "knapsack"
    task_options = SMALL


def _instance(n: int = 10, b: int = 8, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randint(300, 800, (n,), generator=generator).double() / 100
    values = torch.randn(b, n, generator=generator, dtype=torch.float64) * 3 + 2
    return values, weights


def test_the_dynamic_programme_finds_the_best_subset_by_enumeration():
    values, weights = _instance()
    capacity = 17.0
    chosen = solve_knapsack(values, weights, capacity)
    assert ((chosen == 0) | (chosen == 1)).all()
    assert (chosen @ weights <= capacity + 1e-9).all()
    subsets = torch.tensor(list(itertools.product([0.0, 1.0], repeat=10)), dtype=torch.float64)
    feasible = subsets[subsets @ weights <= capacity + 1e-9]
    best = (values @ feasible.T).max(dim=1).values
    torch.testing.assert_close((values * chosen).sum(-1), best)


def test_the_relaxation_tends_to_the_lp_relaxation_and_stays_within_capacity():
    values, weights = _instance(seed=1)
    capacity = 12.0
    soft = soft_knapsack(values, weights, capacity, temperature=1e-3)
    assert (soft @ weights <= capacity + 1e-6).all()
    for row in range(len(values)):  # the LP relaxation max vᵀz, wᵀz ≤ C, 0 ≤ z ≤ 1
        lp = linprog(
            -values[row].numpy(), A_ub=weights.numpy()[None], b_ub=[capacity], bounds=(0, 1)
        )
        assert float(values[row] @ soft[row]) == pytest.approx(-lp.fun, abs=0.05)


@pytest.mark.parametrize("capacity", [12.0, 1000.0])  # binding, and not
def test_the_relaxations_gradient_matches_finite_differences(capacity):
    values, weights = _instance(seed=2)

    class Layer:
        def decide(self, predictions, batch):
            return soft_knapsack(predictions, weights, capacity, temperature=0.5)

        def objective(self, decisions, batch):
            return (decisions * torch.linspace(-1, 2, 10, dtype=torch.float64)).sum(-1)

    direction = torch.randn(values.shape, generator=torch.Generator().manual_seed(3)).double()
    autograd, finite = directional_derivative(Layer(), None, values, direction, step=1e-6)
    assert abs(autograd) > 1e-3
    assert autograd == pytest.approx(finite, rel=1e-5)


def test_the_data_follow_pyepos_generator():
    task = Knapsack(KnapsackConfig(**SMALL))
    train = task.split("train")
    values, weights = train.targets["y"], train.context["weights"]
    assert tuple(train.inputs.shape) == (64, 5) and tuple(values.shape) == (64, 10)
    assert torch.equal(values, values.round()) and (values >= 1).all()
    assert (weights == weights[0]).all()  # one set of weights for every instance
    cents = weights[0].double() * 100
    assert torch.allclose(cents, cents.round(), atol=1e-3)
    assert (weights >= 3).all() and (weights < 8).all()
    again = Knapsack(KnapsackConfig(**SMALL)).split("train")
    assert torch.equal(again.inputs, train.inputs) and torch.equal(again.targets["y"], values)
    # more signal (degree 1, no noise): the values are a deterministic function of x
    clean = Knapsack(KnapsackConfig(**{**SMALL, "degree": 1, "noise_width": 0.0})).split("train")
    x, y = clean.inputs.double().numpy(), clean.targets["y"].double().numpy()
    fit = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)
    residual = y - np.c_[x, np.ones(len(x))] @ fit[0]
    assert np.abs(residual).max() <= 1.0  # linear up to the ceiling


def test_true_values_are_optimal_and_random_predictions_score_about_zero():
    task = Knapsack(KnapsackConfig(**{**SMALL, "test_size": 400}))
    metrics = task.score(task.split("test").targets["y"], "test")
    assert metrics["ndq"] == 1.0 and metrics["regret"] == 0.0
    assert abs(random_ndq(task, "test", seed=5)) < 0.1
