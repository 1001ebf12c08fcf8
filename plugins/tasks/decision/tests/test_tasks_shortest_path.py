"""shortest-path: the DP against enumerating every path, the relaxation's marginals against the
Gibbs distribution written out, PyEPO's generator, and the task's conformance."""

from __future__ import annotations

import itertools

import pytest
import torch
from twcore_task_decision.baselines import random_ndq
from twcore_task_decision.shortest_path import ShortestPath, ShortestPathConfig
from twcore_task_decision.solvers.grid_path import (
    incoming,
    num_edges,
    shortest_paths,
    soft_paths,
)

from twcore.testing import DecisionLayerConformance, TaskConformance

SMALL = {"grid": 4, "train_size": 64, "val_size": 32, "test_size": 64}


class TestShortestPathConformance(TaskConformance):
    task = "shortest-path"
    task_options = SMALL
    model = "mlp"
    model_options = {"hidden": [8]}


class TestShortestPathDecisionLayer(DecisionLayerConformance):
    task = "shortest-path"
    task_options = SMALL


def _every_path(grid: int) -> torch.Tensor:
    """The edge indicators [P, E] of every monotone path, by enumerating the move orders."""
    paths = []
    for souths in itertools.combinations(range(2 * (grid - 1)), grid - 1):
        z, node = torch.zeros(num_edges(grid), dtype=torch.float64), 0
        for move in range(2 * (grid - 1)):
            step = grid if move in souths else 1
            (edge,) = [e for e, src in incoming(grid)[node + step] if src == node]
            z[edge], node = 1.0, node + step
        paths.append(z)
    return torch.stack(paths)


def test_the_dynamic_programme_finds_the_cheapest_of_every_path():
    paths = _every_path(4)
    assert len(paths) == 20  # C(6, 3)
    costs = torch.rand(16, num_edges(4), generator=torch.Generator().manual_seed(0)).double()
    chosen = shortest_paths(costs, 4)
    assert all(any(torch.equal(z, p) for p in paths) for z in chosen)  # each a path
    torch.testing.assert_close((costs * chosen).sum(-1), (costs @ paths.T).min(dim=1).values)


def test_the_relaxation_is_the_gibbs_distributions_edge_marginals():
    paths = _every_path(3)
    costs = torch.rand(5, num_edges(3), generator=torch.Generator().manual_seed(1)).double()
    for temperature in (0.3, 1.0):
        weights = torch.softmax(-(costs @ paths.T) / temperature, dim=1)
        torch.testing.assert_close(soft_paths(costs, 3, temperature), weights @ paths)
    near = soft_paths(costs, 3, 1e-4)
    torch.testing.assert_close(near, shortest_paths(costs, 3), atol=1e-6, rtol=0)


def test_the_relaxations_gradient_is_the_marginals_covariance():
    """d E[z] / dc = −Cov(z) / τ under the Gibbs distribution, written out over every path."""
    paths, temperature = _every_path(3), 0.5
    costs = torch.rand(1, num_edges(3), generator=torch.Generator().manual_seed(2)).double()
    jacobian = torch.autograd.functional.jacobian(lambda c: soft_paths(c, 3, temperature), costs)
    weights = torch.softmax(-(costs @ paths.T) / temperature, dim=1)[0]
    mean = weights @ paths
    covariance = (paths - mean).T @ torch.diag(weights) @ (paths - mean)
    torch.testing.assert_close(jacobian[0, :, 0, :], -covariance / temperature)


def test_the_data_follow_pyepos_generator():
    task = ShortestPath(ShortestPathConfig(**SMALL))
    train = task.split("train")
    assert tuple(train.inputs.shape) == (64, 5) and tuple(train.targets["y"].shape) == (64, 24)
    assert (train.targets["y"] > 0).all()
    clean = ShortestPath(ShortestPathConfig(**{**SMALL, "noise_width": 0.0, "degree": 1}))
    x, costs = clean.split("train").inputs.double(), clean.split("train").targets["y"].double()
    design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    fit = torch.linalg.lstsq(design, costs).solution
    torch.testing.assert_close(design @ fit, costs, atol=1e-5, rtol=0)  # degree 1: linear in x


def test_regret_is_the_extra_cost_and_true_costs_are_optimal():
    task = ShortestPath(ShortestPathConfig(**{**SMALL, "test_size": 400}))
    test = task.split("test")
    metrics = task.score(test.targets["y"], "test")
    assert metrics["ndq"] == 1.0 and metrics["regret"] == 0.0
    optimal_paths = shortest_paths(test.targets["y"], 4)
    assert metrics["objective"] == task.quality_reference("test").dq_optimal
    assert metrics["dq_optimal"] == pytest.approx(
        -float((test.targets["y"] * optimal_paths).sum(-1).double().mean())
    )
    uniform = torch.ones_like(test.targets["y"])  # every path equal: the DP's first one
    optimal = (test.targets["y"] * optimal_paths).sum(-1)
    extra = (test.targets["y"] * shortest_paths(uniform, 4)).sum(-1) - optimal
    scored = task.score(uniform, "test")
    assert scored["regret"] == pytest.approx(float(extra.double().mean()), rel=1e-5)
    assert scored["normalised_regret"] == pytest.approx(
        float(extra.double().sum() / optimal.double().sum()), rel=1e-5
    )
    assert abs(random_ndq(task, "test", seed=5)) < 0.1
