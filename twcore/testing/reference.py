"""Small reference plugins that the conformance suites pair a plugin under test with.

They are deliberately tiny and independent of the repository's own plugins, so a third-party
author can test a method, task or model with nothing but ``twcore`` installed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from twcore.contract.batch import Batch
from twcore.contract.hookspecs import RegisterMethod, RegisterModel, RegisterTask, hookimpl
from twcore.contract.method import Method, StepResult
from twcore.contract.model import Model, flat_input_size
from twcore.contract.options import option
from twcore.contract.spec import Capability, HeadSpec, ObjectiveKind, ObjectiveSpec, Role, TaskSpec
from twcore.contract.task import TensorTask
from twcore.orchestration.registry import PluginSource
from twcore.version import __version__

REFERENCE_TASK = "reference-task"
REFERENCE_MODEL = "reference-model"
REFERENCE_METHOD = "reference-method"
REFERENCE_SOURCE = PluginSource("twcore.testing", "twcore", __version__)


@dataclass
class ReferenceTaskConfig:
    train_size: int = option(256, help="training examples")
    data_seed: int = option(0, help="seed of the generated data")


class ReferenceTask(TensorTask):
    """Three objectives on a 6-d Gaussian input: ``main`` (3-way classification, main role),
    ``aux`` (2-way classification, auxiliary) and ``value`` (regression, auxiliary)."""

    Config = ReferenceTaskConfig

    def build_spec(self) -> TaskSpec:
        return TaskSpec(
            input_shape=(6,),
            heads=(HeadSpec("main", 3), HeadSpec("aux", 2), HeadSpec("value", 1)),
            objectives=(
                ObjectiveSpec("main", "main", ObjectiveKind.CLASSIFICATION, Role.MAIN),
                ObjectiveSpec("aux", "aux", ObjectiveKind.CLASSIFICATION, Role.AUXILIARY),
                ObjectiveSpec("value", "value", ObjectiveKind.REGRESSION, Role.AUXILIARY),
            ),
            capabilities=frozenset({Capability.VALIDATION}),
            primary_metric="main_acc",
            primary_mode="max",
            summary_metrics=("main_acc", "avg_acc", "avg_loss"),
        )

    def build_splits(self) -> dict[str, Batch]:
        generator = torch.Generator().manual_seed(self.config.data_seed)
        sizes = {"train": self.config.train_size, "val": 64, "test": 128}
        teacher = torch.randn(6, 6, generator=generator)
        splits = {}
        for split, size in sizes.items():
            inputs = torch.randn(size, 6, generator=generator)
            hidden = torch.tanh(inputs @ teacher)
            splits[split] = Batch(
                inputs=inputs,
                targets={
                    "main": hidden[:, :3].argmax(dim=1),
                    "aux": (hidden[:, 3] > 0).long(),
                    "value": hidden[:, 4:].sum(dim=1),
                },
            )
        return splits


@dataclass
class ReferenceModelConfig:
    width: int = option(16, help="width of the shared hidden layer")


class ReferenceModel(Model):
    """Flatten -> Linear -> tanh trunk, one linear map per head."""

    Config = ReferenceModelConfig

    def __init__(self, config: ReferenceModelConfig, spec: TaskSpec) -> None:
        super().__init__(config, spec)
        self.trunk = nn.Sequential(
            nn.Flatten(start_dim=-len(spec.input_shape)),
            nn.Linear(flat_input_size(spec), config.width),
            nn.Tanh(),
        )
        self.heads = nn.ModuleDict({h.name: nn.Linear(config.width, h.size) for h in spec.heads})


class ReferenceMethod(Method):
    """Plain mean of the objectives (the simplest method), to exercise tasks and models."""

    def train_step(self, batch: Batch) -> StepResult:
        losses = self.ctx.objective_losses(batch)
        self.ctx.optimizer.zero_grad(set_to_none=True)
        losses.mean().backward()
        self.ctx.optimizer_step()
        return StepResult(losses=losses.detach())


class ReferencePlugins:
    """The plugin object registering the reference task, model and method."""

    @staticmethod
    @hookimpl
    def twcore_register_tasks(register: RegisterTask) -> None:
        register(REFERENCE_TASK, ReferenceTask)

    @staticmethod
    @hookimpl
    def twcore_register_models(register: RegisterModel) -> None:
        register(REFERENCE_MODEL, ReferenceModel)

    @staticmethod
    @hookimpl
    def twcore_register_methods(register: RegisterMethod) -> None:
        register(REFERENCE_METHOD, ReferenceMethod)
