"""The linear model: conformance, and training converges to the least-squares solution."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from twcore.contract.batch import Batch
from twcore.contract.options import option
from twcore.contract.spec import Capability, HeadSpec, ObjectiveKind, ObjectiveSpec, Role, TaskSpec
from twcore.contract.task import TensorTask
from twcore.testing import Harness, ModelConformance, registry_with
from twcore.testing.harness import resolve


@dataclass
class LineTaskConfig:
    data_seed: int = option(0, help="seed of the data")


class LineTask(TensorTask):
    """Noisy linear regression y = x·w + b + ε with 3 features, for the closed-form check."""

    Config = LineTaskConfig

    def build_spec(self) -> TaskSpec:
        return TaskSpec(
            input_shape=(3,),
            heads=(HeadSpec("y", 1),),
            objectives=(
                ObjectiveSpec("y", head="y", kind=ObjectiveKind.REGRESSION, role=Role.MAIN),
            ),
            capabilities=frozenset({Capability.VALIDATION}),
            primary_metric="mse",
            primary_mode="min",
            summary_metrics=("mse",),
        )

    def build_splits(self) -> dict[str, Batch]:
        generator = torch.Generator().manual_seed(self.config.data_seed)
        inputs = torch.randn(300, 3, generator=generator)
        targets = inputs @ torch.tensor([1.5, -2.0, 0.5]) + 0.7
        targets = targets + 0.3 * torch.randn(300, generator=generator)
        data = Batch(inputs=inputs, targets={"y": targets})
        return {
            "train": data.index(slice(0, 200)),
            "val": data.index(slice(200, 250)),
            "test": data.index(slice(250, 300)),
        }


class TestLinearConformance(ModelConformance):
    model = "linear"


class TestLinearWithoutBiasConformance(ModelConformance):
    model = "linear"
    model_options = {"bias": False}


def _harness(**options):
    registry = registry_with(
        [
            resolve("task", LineTask, "line"),
            resolve("method", "ew", "ew"),
            resolve("model", "linear", "linear"),
        ]
    )
    base = {"method": "ew", "task": "line", "model": "linear", "wandb.enabled": False}
    return Harness(registry, {**base, "device": "cpu", **options})


def test_training_converges_to_the_least_squares_solution():
    harness = _harness(
        batch_size=200, **{"optim.name": "sgd", "optim.lr": 0.3, "optim.momentum": 0.0}
    )
    harness.steps(400)
    train = harness.components.task.split("train")
    design = torch.cat([train.inputs, torch.ones(len(train), 1)], dim=1).double()
    solution = torch.linalg.lstsq(design, train.targets["y"].double().unsqueeze(1)).solution
    head = harness.components.model.heads["y"]
    fitted = torch.cat([head.weight.detach().flatten(), head.bias.detach()]).double()
    torch.testing.assert_close(fitted, solution.flatten(), atol=1e-4, rtol=1e-4)


def test_without_bias_there_is_no_intercept_and_no_shared_parameter():
    model = _harness(**{"model.bias": False}).components.model
    assert model.heads["y"].bias is None
    assert model.shared_parameters() == []
    assert model(torch.zeros(5, 3))["y"].abs().max() == 0


def test_leading_item_dims_give_one_line_per_item():
    model = _harness().components.model
    items = torch.randn(4, 50, 3)
    outputs = model(items)["y"]
    assert outputs.shape == (4, 50, 1)
    head = model.heads["y"]
    torch.testing.assert_close(outputs, items @ head.weight.T + head.bias)
