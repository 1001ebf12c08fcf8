"""two-stage and dfl: each update is the gradient of its documented loss; DFL trades prediction
accuracy for decision quality on cubic top-k."""

from __future__ import annotations

import pytest
import torch

import twcore
from twcore.contract.decision import TRUE_DECISIONS
from twcore.contract.errors import ConfigError, IncompatiblePairingError
from twcore.testing import Harness, MethodConformance, registry_with
from twcore.testing.harness import resolve

CUBIC = {"train_size": 64, "val_size": 32, "test_size": 64}


class TestTwoStageConformance(MethodConformance):
    method = "two-stage"
    task = "cubic-topk"
    model = "linear"
    task_options = CUBIC


class TestDecisionFocusedConformance(MethodConformance):
    method = "dfl"
    task = "portfolio"
    model = "mlp"
    method_options = {"prediction_weight": 0.5}
    task_options = {"num_assets": 8, "train_size": 32, "val_size": 16, "test_size": 32}
    model_options = {"hidden": [8]}


def _harness(method: str, **options) -> Harness:
    registry = registry_with(
        [
            resolve("method", method, method),
            resolve("task", "cubic-topk", "cubic-topk"),
            resolve("model", "linear", "linear"),
        ]
    )
    base = {
        "method": method,
        "task": "cubic-topk",
        "model": "linear",
        "optim.name": "sgd",
        "optim.lr": 0.1,
        "optim.momentum": 0.0,
        "wandb.enabled": False,
        "device": "cpu",
        "task.temperature": 0.5,
        **{f"task.{k}": v for k, v in CUBIC.items()},
    }
    return Harness(registry, {**base, **options})


def _sgd_step_matches(harness: Harness, loss_of) -> None:
    model = harness.components.model
    batch = next(harness.stream)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    grads = torch.autograd.grad(loss_of(harness, batch), list(model.parameters()))
    harness.components.method.train_step(batch)
    for (name, after), grad in zip(model.named_parameters(), grads, strict=True):
        torch.testing.assert_close(after.detach(), before[name] - 0.1 * grad)


def test_two_stage_step_is_sgd_on_the_prediction_loss():
    def mse(harness, batch):
        return harness.components.context.objective_losses(batch).mean()

    _sgd_step_matches(_harness("two-stage"), mse)


@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_dfl_step_is_sgd_on_regret_plus_alpha_times_the_prediction_loss(alpha):
    def loss(harness, batch):
        task, context = harness.components.task, harness.components.context
        predictions = context.outputs(batch)["y"]
        regret = -task.decision.objective(task.decision.decide(predictions, batch), batch).mean()
        return regret + alpha * context.objective_losses(batch).mean()

    _sgd_step_matches(_harness("dfl", **{"method.prediction_weight": alpha}), loss)


def test_dfl_buys_decision_quality_with_prediction_error_on_cubic_topk(tmp_path):
    common = ["task=cubic-topk", "model=linear", "wandb.enabled=false", "steps=400"]
    two_stage = twcore.run(
        [*common, "method=two-stage", "optim.lr=0.01", f"run_dir={tmp_path / 'a'}"]
    )
    dfl = twcore.run([*common, "method=dfl", "optim.lr=0.05", f"run_dir={tmp_path / 'b'}"])
    assert two_stage.metrics["test"]["ndq"] < -0.8 < 0.9 < dfl.metrics["test"]["ndq"]
    assert dfl.metrics["test"]["mse"] > 1.5 * two_stage.metrics["test"]["mse"]


def test_methods_need_a_decision_layer(tmp_path):
    for method in ("two-stage", "dfl"):
        with pytest.raises(IncompatiblePairingError, match="needs a decision layer"):
            twcore.run([f"method={method}", "task=digits", f"run_dir={tmp_path / method}"])


def test_negative_prediction_weight_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"method.prediction_weight=-1.0 must be >= 0"):
        twcore.run(["method=dfl", "task=cubic-topk", "method.prediction_weight=-1", "steps=1"])


@pytest.mark.parametrize("method", ["nce", "ltr"])
def test_the_pooled_methods_read_the_stored_true_optima(method):
    """NCE's and LTR's step takes z*(y) from the batch's stored optima into its pool and loss:
    no solve (with no predictions' optima drawn), and the loss it had when it solved them."""
    harness = _harness(method, **{"method.solve_ratio": 0.0})
    task, rule = harness.components.task, harness.components.method
    layer = task.decision
    solved = []
    solve = layer.solve
    layer.solve = lambda values, batch: solved.append(len(values)) or solve(values, batch)
    batch = next(harness.stream)
    predictions = harness.components.model(batch.inputs)[layer.head]
    stored = rule.decision_loss(layer, predictions, batch)
    assert solved == []
    without = batch.index(slice(None))
    del without.context[TRUE_DECISIONS]
    torch.testing.assert_close(rule.decision_loss(layer, predictions, without), stored)
    assert solved == [len(batch)]
