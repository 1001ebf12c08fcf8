"""The plugin author's kit: the conformance suites pass on good plugins and catch bad ones."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from twcore.contract.method import StepResult
from twcore.testing import (
    MethodConformance,
    ModelConformance,
    ReferenceMethod,
    ReferenceModel,
    ReferenceTask,
    TaskConformance,
)


class ForgetfulMethod(ReferenceMethod):
    """Learns a running weight vector but leaves it out of state_dict: resume must catch it."""

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.weights = torch.full((ctx.spec.num_objectives,), 1.0 / ctx.spec.num_objectives)

    def train_step(self, batch):
        losses = self.ctx.objective_losses(batch)
        self.ctx.optimizer.zero_grad(set_to_none=True)
        (self.weights * losses).sum().backward()
        self.ctx.optimizer_step()
        self.weights = torch.softmax(losses.detach(), dim=0)
        return StepResult(losses.detach(), self.weights)


class StrayParameterModel(ReferenceModel):
    """Has a parameter outside the trunk and the heads."""

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.temperature = nn.Parameter(torch.ones(()))


class MeanLossTask(ReferenceTask):
    """Returns batch-mean losses where per-example ones are required."""

    def objective_losses(self, outputs, batch):
        return {k: v.mean() for k, v in super().objective_losses(outputs, batch).items()}


class TestReferenceMethodPasses(MethodConformance):
    method = ReferenceMethod


class TestReferenceTaskPasses(TaskConformance):
    task = ReferenceTask


class TestReferenceModelPasses(ModelConformance):
    model = ReferenceModel


def test_method_suite_catches_state_left_out_of_state_dict(tmp_path):
    suite = type("Suite", (MethodConformance,), {"method": ForgetfulMethod})()
    with pytest.raises(AssertionError):
        suite.test_resume_from_checkpoint_matches_an_uninterrupted_run(tmp_path)


def test_model_suite_catches_a_parameter_without_owner():
    suite = type("Suite", (ModelConformance,), {"model": StrayParameterModel})()
    with pytest.raises(AssertionError, match="temperature"):
        suite.test_every_parameter_is_shared_or_owned_by_one_head()


def test_task_suite_catches_losses_that_are_not_per_example():
    suite = type("Suite", (TaskConformance,), {"task": MeanLossTask})()
    with pytest.raises(AssertionError, match="has shape"):
        suite.test_per_example_losses_are_finite_and_differentiable()
