"""Group DRO: the hand-computed exponentiated update, and weight flowing to the worst task."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from twcore_method_group_dro import GroupDRO

from twcore.contract.errors import ConfigError
from twcore.testing import Harness, MethodConformance, WeightingProperties, plugin_harness
from twcore.testing.own_loop import assert_same_parameters, engine_parameters, plain_setup


class TestGroupDROConformance(MethodConformance):
    method = "group-dro"


def _harness(**options) -> Harness:
    sgd = {"optim.name": "sgd", "optim.lr": 0.1, "optim.momentum": 0.0}
    return plugin_harness("group-dro", options={**sgd, **options})


def test_one_step_matches_a_hand_computed_update():
    harness = _harness(**{"method.step_size": 0.5})
    model, context = harness.components.model, harness.components.context
    batch = next(harness.stream)
    losses = context.objective_losses(batch)
    values = [float(v) for v in losses.detach()]
    # q = (1/3, 1/3, 1/3) ⊙ exp(0.5 ℓ), normalised — written out by hand.
    expected = [math.exp(0.5 * v) for v in values]
    expected = torch.tensor([e / sum(expected) for e in expected])
    grads = torch.autograd.grad((expected * losses).sum(), list(model.parameters()))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    result = harness.components.method.train_step(batch)
    torch.testing.assert_close(result.weights, expected)
    for (name, after), grad in zip(model.named_parameters(), grads, strict=True):
        torch.testing.assert_close(after.detach(), before[name] - 0.1 * grad)


def test_weight_flows_to_the_objective_with_the_largest_loss():
    harness = _harness(**{"method.step_size": 0.5})
    for _ in range(30):
        result = harness.step()
    worst = int(result.losses.argmax())
    assert int(result.weights.argmax()) == worst
    assert float(result.weights.sum()) == pytest.approx(1.0)


def test_non_positive_step_size_is_a_config_error():
    with pytest.raises(ConfigError, match=r"method.step_size=0.0 must be > 0"):
        _harness(**{"method.step_size": 0.0})


class TestGroupDROProperties(WeightingProperties):
    simplex = True

    def make(self, num_objectives, main):
        return GroupDRO(num_objectives, step_size=0.1)


def test_a_plain_loop_with_the_rule_trains_exactly_as_the_engine(tmp_path):
    options = {"method": "group-dro", "method.step_size": 0.5, "steps": 15, "seed": 3}
    engine = engine_parameters(tmp_path / "engine", options)
    setup = plain_setup({"seed": 3})
    rule = GroupDRO(setup.spec.num_objectives, step_size=0.5)
    for batch in itertools.islice(setup.stream, 15):
        losses = setup.losses(batch)
        setup.optimizer.zero_grad(set_to_none=True)
        rule.backward(losses)
        setup.optimizer.step()
    assert_same_parameters(setup.model, engine)
