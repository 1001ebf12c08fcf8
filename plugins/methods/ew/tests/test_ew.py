"""Equal weighting: the update is the gradient of the mean of the selected objectives."""

from __future__ import annotations

import itertools

import pytest
import torch
from twcore_method_ew import EqualWeighting

from twcore.contract.errors import ConfigError
from twcore.testing import Harness, MethodConformance, WeightingProperties, registry_with
from twcore.testing.harness import resolve
from twcore.testing.own_loop import assert_same_parameters, engine_parameters, plain_setup


class TestEqualWeightingConformance(MethodConformance):
    method = "ew"


class TestMainOnlyConformance(MethodConformance):
    method = "ew"
    method_options = {"objectives": ["main"]}


def _harness(**options):
    registry = registry_with([resolve("method", "ew", "ew")])
    base = {
        "method": "ew",
        "task": "reference-task",
        "model": "reference-model",
        "optim.name": "sgd",
        "optim.lr": 0.1,
        "optim.momentum": 0.0,
        "wandb.enabled": False,
        "device": "cpu",
    }
    return Harness(registry, {**base, **options})


def test_one_step_is_sgd_on_the_mean_of_the_objectives():
    harness = _harness()
    model, context = harness.components.model, harness.components.context
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    batch = next(harness.stream)
    losses = context.objective_losses(batch)
    grads = torch.autograd.grad(losses.mean(), list(model.parameters()))
    harness.components.method.train_step(batch)
    for (name, after), grad in zip(model.named_parameters(), grads, strict=True):
        torch.testing.assert_close(after.detach(), before[name] - 0.1 * grad)


def test_weights_are_uniform_over_all_objectives_by_default():
    result = _harness().step()
    torch.testing.assert_close(result.weights, torch.full((3,), 1 / 3))


def test_main_only_selects_the_main_objective():
    result = _harness(**{"method.objectives": ["main"]}).step()
    torch.testing.assert_close(result.weights, torch.tensor([1.0, 0.0, 0.0]))


def test_main_only_leaves_auxiliary_heads_untouched():
    harness = _harness(**{"method.objectives": ["main"]})
    model = harness.components.model
    aux_before = [p.detach().clone() for p in model.head_parameters("aux")]
    harness.steps(3)
    for before, after in zip(aux_before, model.head_parameters("aux"), strict=True):
        assert torch.equal(before, after)


def test_unknown_objective_is_a_config_error_listing_the_objectives():
    with pytest.raises(ConfigError, match=r"'nope'.*objectives: main, aux, value"):
        _harness(**{"method.objectives": ["nope"]})


class TestEqualWeightingProperties(WeightingProperties):
    simplex = True

    def make(self, num_objectives, main):
        return EqualWeighting(num_objectives)


def test_main_only_as_a_rule_trains_the_selected_objective_alone():
    model = torch.nn.Linear(3, 2)
    inputs, targets = torch.randn(8, 3), torch.randn(8, 2)
    losses = (model(inputs) - targets).square().mean(dim=0)  # [2]
    expected = torch.autograd.grad(losses[0], list(model.parameters()), retain_graph=True)
    step = EqualWeighting(2, selected=[0]).backward(losses)
    torch.testing.assert_close(step.weights, torch.tensor([1.0, 0.0]))
    for parameter, gradient in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(parameter.grad, gradient)


@pytest.mark.parametrize("main_only", [True, False])
def test_a_plain_loop_with_the_rule_trains_exactly_as_the_engine(tmp_path, main_only):
    selected = {"method.objectives": ["main"]} if main_only else {}
    options = {"method": "ew", **selected, "steps": 15, "seed": 3}
    engine = engine_parameters(tmp_path / "engine", options)
    setup = plain_setup({"seed": 3})
    main = [setup.spec.main_index] if main_only else []
    rule = EqualWeighting(setup.spec.num_objectives, selected=main)
    for batch in itertools.islice(setup.stream, 15):
        losses = setup.losses(batch)
        setup.optimizer.zero_grad(set_to_none=True)
        rule.backward(losses)
        setup.optimizer.step()
    assert_same_parameters(setup.model, engine)
