"""portfolio: features from past returns only, Σ from the trailing window, the solver switch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from twcore_task_decision.baselines import random_ndq
from twcore_task_decision.portfolio import Portfolio, PortfolioConfig
from twcore_task_decision.testing import (
    DecisionTaskConformance,
    decision_harness,
)

from twcore.contract.errors import ConfigError
from twcore.orchestration.config.compose import compose
from twcore.testing import DecisionLayerConformance, Harness
from twcore.testing.decision import as_double, directional_derivative

SMALL = {"num_assets": 12, "train_size": 64, "val_size": 32, "test_size": 96}


class TestPortfolioConformance(DecisionTaskConformance):
    task = "portfolio"
    task_options = SMALL
    model = "mlp"
    model_options = {"hidden": [16]}


class TestPortfolioDecisionLayer(DecisionLayerConformance):
    task = "portfolio"
    task_options = SMALL
    noise = 0.01
    finite_difference_step = 1e-7
    gradient_rtol = 1e-3


def _task(**options) -> Portfolio:
    return Portfolio(PortfolioConfig(**{**SMALL, **options}))


def _harness(**options) -> Harness:
    return decision_harness("portfolio", SMALL, model_options={"hidden": [16]}, **options)


def _all_days(task: Portfolio) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features, targets and Σ of every day in time order (the splits are consecutive)."""
    splits = [task.split(s) for s in ("train", "val", "test")]
    return (
        torch.cat([s.inputs for s in splits]).double(),
        torch.cat([s.targets["y"] for s in splits]).double(),
        torch.cat([s.context["covariance"] for s in splits]).double(),
    )


def test_target_is_the_next_days_return_seen_as_tomorrows_latest_return_feature():
    features, targets, _ = _all_days(_task())
    latest_return = features[1:, :, 0].reshape(-1).numpy()  # standardised r_t of day t + 1
    next_return = targets[:-1].reshape(-1).numpy()  # y of day t = r_{t+1}
    slope, intercept = np.polyfit(next_return, latest_return, 1)
    residual = latest_return - (slope * next_return + intercept)
    assert slope > 0 and np.abs(residual).max() < 1e-4


def test_covariance_is_the_trailing_correlation_of_past_returns_plus_the_ridge():
    _, targets, covariance = _all_days(_task())
    # Recover the raw daily returns from the targets: r_{t+1} = y_t.
    returns = targets.numpy()
    for day in (60, 130, 191):
        window = returns[day - 60 : day]  # r_{day-59} .. r_{day} are y_{day-60} .. y_{day-1}
        expected = np.corrcoef(window.T) + 0.1 * np.eye(returns.shape[1])
        np.testing.assert_allclose(covariance[day].numpy(), expected, atol=1e-5)
    assert torch.linalg.eigvalsh(covariance).min() > 0.1 - 1e-5


def test_data_depends_on_data_seed_only():
    # generate_splits() is the data without the quality references (no solver calls).
    a = _task().generate_splits()["test"].inputs
    b = _task(solver="cvxpylayers", risk_aversion=0.5).generate_splits()["test"].inputs
    c = _task(data_seed=3).generate_splits()["test"].inputs
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_true_returns_score_ndq_of_exactly_one_and_random_near_zero():
    task = _task()
    metrics = task.score(task.split("test").targets["y"], "test")
    assert metrics["ndq"] == 1.0 and metrics["objective"] == metrics["dq_optimal"]
    assert abs(random_ndq(task, "test", seed=99)) < 0.1


def test_decision_objective_equals_a_direct_numpy_computation():
    task = _task()
    data = task.split("test")
    decisions = task.decision.decide(data.targets["y"] * 0.5 + 0.01, data)
    x = decisions.double().numpy()
    y = data.targets["y"].double().numpy()
    sigma = data.context["covariance"].double().numpy()
    expected = (x * y).sum(1) - 0.1 * np.einsum("bi,bij,bj->b", x, sigma, x)
    np.testing.assert_allclose(
        task.decision.objective(decisions, data).numpy(), expected, atol=1e-6
    )
    np.testing.assert_allclose(x.sum(1), 1.0, atol=1e-5)
    assert x.min() >= -1e-6


def test_the_cvxpylayers_switch_gives_the_same_decisions_as_ours():
    ours, reference = _task(), _task(solver="cvxpylayers")
    data = ours.split("test").index(slice(0, 24))
    predictions = data.targets["y"] + 0.01 * torch.randn(
        data.targets["y"].shape, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(
        reference.decision.decide(predictions, data),
        ours.decision.decide(predictions, data),
        atol=1e-3,
        rtol=0,
    )


def test_decision_gradient_matches_finite_differences():
    task = _task()
    batch = as_double(task.split("test").index(slice(0, 30)))
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(30, 12, generator=generator, dtype=torch.float64)
    predictions = batch.targets["y"] + 0.01 * noise
    direction = torch.randn(30, 12, generator=generator, dtype=torch.float64)
    autograd, finite = directional_derivative(
        task.decision, batch, predictions, direction, step=1e-7
    )
    assert autograd == pytest.approx(finite, rel=1e-3, abs=1e-8)


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
        ({"solver": "gurobi"}, r"^task\.solver=gurobi must be one of ours, cvxpylayers$"),
        ({"risk_aversion": -0.1}, r"^task\.risk_aversion=-0\.1 must be > 0$"),
        ({"num_assets": 1}, r"^task\.num_assets=1 must be >= 2$"),
        ({"covariance_window": 1}, r"^task\.covariance_window=1 must be >= 2$"),
    ],
)
def test_invalid_options_are_one_line_config_errors(options, message):
    with pytest.raises(ConfigError, match=message) as error:
        _harness(**{f"task.{k}": v for k, v in options.items()})
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("task.solver=cvxpylayer", r"^task\.solver=cvxpylayer must be one of .*did you mean"),
        ("task.covariance_ridge=-1", r"^task\.covariance_ridge=-1\.0 must be >= 0$"),
        ("task.num_factors=0", r"^task\.num_factors=0 must be >= 1$"),
    ],
)
def test_the_composer_refuses_a_bad_option_naming_its_key(override, message):
    with pytest.raises(ConfigError, match=message):
        compose(["task=portfolio", override])
