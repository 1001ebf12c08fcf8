"""cubic-topk: data from the stated formula, exact quality references, the least-squares trap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from twcore_task_decision.baselines import least_squares_fit, least_squares_predictions, random_ndq
from twcore_task_decision.cubic_topk import CubicTopK, CubicTopKConfig
from twcore_task_decision.testing import (
    DecisionTaskConformance,
    decision_harness,
)

from twcore.contract.errors import ConfigError
from twcore.contract.spec import Capability
from twcore.contract.task import DecisionLayer
from twcore.orchestration.config.compose import compose
from twcore.orchestration.registry import get_registry
from twcore.testing import DecisionLayerConformance, Harness
from twcore.testing.decision import as_double, directional_derivative


class TestCubicTopKConformance(DecisionTaskConformance):
    task = "cubic-topk"
    model = "mlp"
    model_options = {"hidden": [16]}


class TestCubicTopKDecisionLayer(DecisionLayerConformance):
    task = "cubic-topk"
    task_options = {"budget": 3}


class TestCubicTopKBudgetThreeConformance(DecisionTaskConformance):
    task = "cubic-topk"
    task_options = {"budget": 3, "num_items": 20, "train_size": 64, "val_size": 32}
    model = "mlp"
    model_options = {"hidden": [8]}


def _task(**options) -> CubicTopK:
    return CubicTopK(CubicTopKConfig(**options))


def _harness(model: str, model_options: dict, **options) -> Harness:
    return decision_harness("cubic-topk", model=model, model_options=model_options, **options)


def test_spec_offers_a_decision_layer_on_the_per_item_head():
    task = _task()
    spec = task.spec
    assert spec.input_shape == (1,)
    assert [(h.name, h.size) for h in spec.heads] == [("y", 1)]
    assert spec.has(Capability.DECISION) and spec.has(Capability.VALIDATION)
    assert (spec.primary_metric, spec.primary_mode) == ("ndq", "max")
    assert spec.summary_metrics == ("ndq", "normalised_regret", "mse", "objective")
    assert spec.main_objective.name == "mse" and spec.main_objective.kind == "custom"
    assert isinstance(task.decision, DecisionLayer) and task.decision.head == "y"


def test_targets_follow_the_cubic_formula_and_split_sizes_follow_the_config():
    task = _task(train_size=30, val_size=20, test_size=10, num_items=7)
    assert {k: tuple(v.inputs.shape) for k, v in task.splits.items()} == {
        "train": (30, 7, 1),
        "val": (20, 7, 1),
        "test": (10, 7, 1),
    }
    for split in task.splits.values():
        x = split.inputs.squeeze(-1).double()
        assert x.min() >= -1 and x.max() <= 1
        expected = 10 * (x**3 - 0.65 * x)
        torch.testing.assert_close(split.targets["y"].double(), expected, rtol=1e-5, atol=1e-5)


def test_data_depends_on_data_seed_only():
    a = _task(temperature=0.5).split("train").inputs
    b = _task(temperature=0.01).split("train").inputs
    c = _task(data_seed=1).split("train").inputs
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_true_values_score_ndq_of_exactly_one():
    task = _task()
    for split in ("val", "test"):
        metrics = task.score(task.split(split).targets["y"], split)
        assert metrics["ndq"] == 1.0
        assert metrics["mse"] == 0.0
        assert metrics["objective"] == metrics["dq_optimal"]


def test_fresh_random_predictions_score_ndq_near_zero():
    # Independent draws (another seed than the references'): the mean of 10 ndq values has a
    # standard error of about 0.01 on 400 instances.
    assert abs(random_ndq(_task(), "test", seed=123)) < 0.06


def test_hard_objective_equals_a_direct_numpy_top_k():
    task = _task(budget=3)
    data = task.split("test")
    predictions = torch.randn(data.targets["y"].shape, generator=torch.Generator().manual_seed(4))
    scores, values = predictions.numpy(), data.targets["y"].double().numpy()
    top = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    expected = np.take_along_axis(values, top, axis=1).sum(axis=1).mean()
    assert task.score(predictions, "test")["objective"] == pytest.approx(expected, rel=1e-6)


def test_soft_decisions_are_a_relaxed_top_k_and_gradients_reach_the_model():
    harness = _harness("mlp", {"hidden": [16]})
    task, model = harness.components.task, harness.components.model
    batch = next(harness.stream)
    decisions = task.decision.decide(model(batch.inputs)["y"], batch)
    assert decisions.shape == batch.targets["y"].shape
    assert (decisions >= 0).all() and (decisions <= 1).all()
    torch.testing.assert_close(decisions.sum(dim=1), torch.ones(len(batch)), atol=1e-4, rtol=0)
    regret = -task.decision.objective(decisions, batch).mean()
    names = [name for name, _ in model.named_parameters()]
    grads = dict(zip(names, torch.autograd.grad(regret, list(model.parameters())), strict=True))
    assert all(torch.isfinite(g).all() for g in grads.values())
    # Top-k is invariant to shifting every score, so the output bias gets no gradient; every
    # other parameter does.
    assert grads["heads.y.bias"].abs().max() < 1e-4 * max(g.abs().max() for g in grads.values())
    assert all(g.abs().sum() > 0 for name, g in grads.items() if name != "heads.y.bias")


def test_soft_decision_gradient_matches_finite_differences():
    task = _task(budget=3, temperature=0.3)
    batch = as_double(task.split("test").index(slice(0, 40)))
    generator = torch.Generator().manual_seed(0)
    predictions = batch.targets["y"] + torch.randn(40, 50, generator=generator, dtype=torch.float64)
    direction = torch.randn(40, 50, generator=generator, dtype=torch.float64)
    autograd, finite = directional_derivative(task.decision, batch, predictions, direction)
    assert autograd == pytest.approx(finite, rel=1e-4, abs=1e-8)


def test_least_squares_line_has_negative_slope_and_ndq_near_minus_one():
    task = _task()
    slope, _ = least_squares_fit(task).tolist()
    # Over x ~ U[-1, 1] the best line has slope 10 (E[x^4] / E[x^2] - 0.65) = -0.5.
    assert slope == pytest.approx(-0.5, abs=0.1)
    ndq = task.score(least_squares_predictions(task, "test"), "test")["ndq"]
    assert ndq < -0.8


@pytest.mark.parametrize("initial_slope", [-0.5, 0.1])
def test_training_through_the_soft_decisions_escapes_the_trap(initial_slope):
    # A linear score a·x + b ranks items by x when a > 0: the hard top-1 then picks x ≈ 1 with
    # y ≈ 3.5, near optimal. Maximising the soft-top-k objective must find that sign.
    task = _task()
    train = task.split("train")
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(initial_slope)
        model.bias.zero_()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(300):
        batch = train.index(torch.randint(0, len(train), (32,)))
        decisions = task.decision.decide(model(batch.inputs), batch)
        loss = -task.decision.objective(decisions, batch).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert model.weight.item() > 0
    with torch.no_grad():
        predictions = model(task.split("test").inputs).squeeze(-1)
    assert task.score(predictions, "test")["ndq"] > 0.9


def _linear_models() -> list[tuple[str, dict]]:
    models = [("mlp", {"hidden": []})]  # an MLP without hidden layers is a linear model
    if "linear" in get_registry().names("model"):
        models.append(("linear", {}))
    return models


@pytest.mark.parametrize(("model", "options"), _linear_models())
def test_a_linear_model_trained_for_mse_matches_least_squares_and_picks_badly(model, options):
    harness = _harness(model, options, steps=400, batch_size=50, **{"optim.lr": 0.05})
    harness.steps(400)
    task, trained = harness.components.task, harness.components.model
    inputs = torch.tensor([[-1.0], [1.0]])
    with torch.no_grad():
        left, right = trained(inputs)["y"].squeeze(-1).tolist()
    slope, intercept = least_squares_fit(task).tolist()
    assert (right - left) / 2 == pytest.approx(slope, abs=0.05)
    assert (right + left) / 2 == pytest.approx(intercept, abs=0.05)
    metrics = task.evaluate(trained, "test", device=torch.device("cpu"), batch_size=128)
    assert metrics["ndq"] < -0.8


def test_non_finite_predictions_are_refused():
    task = _task()
    predictions = task.split("test").targets["y"].clone()
    predictions[3, 7] = float("nan")
    with pytest.raises(ValueError, match="non-finite prediction"):
        task.score(predictions, "test")
    with pytest.raises(ValueError, match="non-finite prediction"):
        task.decision.decide(predictions[:4].unsqueeze(-1), task.split("test").index(slice(0, 4)))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"budget": 0}, r"^task\.budget=0 must be >= 1$"),
        (
            {"budget": 51},
            r"^task 'cubic-topk' options are invalid: budget=51 must be <= num_items=50 ",
        ),
        ({"num_items": 0}, r"^task\.num_items=0 must be >= 1$"),
        ({"temperature": 0.0}, r"^task\.temperature=0\.0 must be > 0$"),
        ({"test_size": 0}, r"^task\.test_size=0 must be >= 1$"),
    ],
)
def test_invalid_options_are_one_line_config_errors(options, message):
    with pytest.raises(ConfigError, match=message) as error:
        _harness("mlp", {}, **{f"task.{k}": v for k, v in options.items()})
    assert "\n" not in str(error.value)


def test_the_composer_refuses_a_bad_option_naming_its_key():
    with pytest.raises(ConfigError, match=r"^task\.temperature=-inf must be a finite number > 0$"):
        compose(["task=cubic-topk", "task.temperature=-inf"])
    with pytest.raises(ConfigError, match=r"^task\.val_size=0 must be >= 1$"):
        compose(["task=cubic-topk", "task.val_size=0"])
    options = compose(["task=cubic-topk", "task.num_items=3", "task.budget=3"])
    assert options.sections["task"].budget == 3  # every item may be chosen
