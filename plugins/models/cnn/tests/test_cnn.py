"""The CNN model: conformance on small image tasks, feature shapes, errors, learning."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from twcore.contract.batch import Batch
from twcore.contract.errors import ConfigError
from twcore.contract.options import option
from twcore.contract.spec import Capability, HeadSpec, ObjectiveKind, ObjectiveSpec, Role, TaskSpec
from twcore.contract.task import TensorTask
from twcore.testing import Harness, ModelConformance, registry_with
from twcore.testing.harness import resolve


@dataclass
class TinyImageConfig:
    side: int = option(8, help="image side")
    channels: int = option(1, help="image channels (0: a (H, W) input without channel dim)")


class TinyImageTask(TensorTask):
    """Two heads on random images whose labels are the quadrant holding the brightest pixel
    (`where`) and whether the image's mean is above 0 (`bright`)."""

    Config = TinyImageConfig

    def build_spec(self) -> TaskSpec:
        c = self.config
        shape = (c.channels, c.side, c.side) if c.channels else (c.side, c.side)
        kind = ObjectiveKind.CLASSIFICATION
        return TaskSpec(
            input_shape=shape,
            heads=(HeadSpec("where", 4), HeadSpec("bright", 2)),
            objectives=(
                ObjectiveSpec("where", head="where", kind=kind, role=Role.MAIN),
                ObjectiveSpec("bright", head="bright", kind=kind, role=Role.AUXILIARY),
            ),
            capabilities=frozenset({Capability.VALIDATION}),
            primary_metric="main_acc",
            primary_mode="max",
            summary_metrics=("main_acc", "avg_acc", "worst_acc"),
        )

    def build_splits(self) -> dict[str, Batch]:
        c = self.config
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(240, max(c.channels, 1), c.side, c.side, generator=generator)
        half = c.side // 2
        quadrants = torch.stack(
            [
                images[:, :, :half, :half].amax(dim=(1, 2, 3)),
                images[:, :, :half, half:].amax(dim=(1, 2, 3)),
                images[:, :, half:, :half].amax(dim=(1, 2, 3)),
                images[:, :, half:, half:].amax(dim=(1, 2, 3)),
            ],
            dim=1,
        )
        targets = {
            "where": quadrants.argmax(dim=1),
            "bright": (images.mean(dim=(1, 2, 3)) > 0).long(),
        }
        inputs = images if c.channels else images[:, 0]
        data = Batch(inputs=inputs, targets=targets)
        return {
            "train": data.index(slice(0, 160)),
            "val": data.index(slice(160, 200)),
            "test": data.index(slice(200, 240)),
        }


class TestCNNOnDigitSizedImages(ModelConformance):
    model = "cnn"
    task = TinyImageTask


class TestCNNOnMNISTSizedImages(ModelConformance):
    model = "cnn"
    task = TinyImageTask
    task_options = {"side": 28}
    model_options = {"channels": [4, 8], "hidden": 16}


class TestCNNOnChannelLessImagesWithDropout(ModelConformance):
    model = "cnn"
    task = TinyImageTask
    task_options = {"channels": 0}
    model_options = {"hidden": 0, "dropout": 0.2, "activation": "tanh"}


def _harness(model_options=None, **task_options):
    registry = registry_with(
        [
            resolve("task", TinyImageTask, "tiny-image"),
            resolve("method", "ew", "ew"),
            resolve("model", "cnn", "cnn"),
        ]
    )
    options = {"method": "ew", "task": "tiny-image", "model": "cnn", "wandb.enabled": False}
    options.update({f"task.{k}": v for k, v in task_options.items()})
    options.update({f"model.{k}": v for k, v in (model_options or {}).items()})
    return Harness(registry, {**options, "device": "cpu"})


@pytest.mark.parametrize(
    ("side", "pooled_side"), [(28, 7), (8, 2)], ids=["mnist-28x28", "digits-8x8"]
)
def test_two_blocks_pool_to_the_expected_grid(side, pooled_side):
    model = _harness({"hidden": 0, "channels": [3, 5]}, side=side).components.model
    assert model.trunk.features_size == 5 * pooled_side * pooled_side
    features = model.features(torch.zeros(2, 1, side, side))
    assert features.shape == (2, 5 * pooled_side * pooled_side)


def test_vector_inputs_are_rejected_with_a_hint():
    registry = registry_with(
        [
            resolve("task", "toy-multitask", "toy-multitask"),
            resolve("method", "ew", "ew"),
            resolve("model", "cnn", "cnn"),
        ]
    )
    options = {"method": "ew", "task": "toy-multitask", "model": "cnn", "wandb.enabled": False}
    with pytest.raises((ConfigError, ValueError), match=r"needs image inputs.*use model=mlp"):
        Harness(registry, {**options, "device": "cpu"}).components  # noqa: B018


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("activation", "sigmoidish", "model.activation=sigmoidish must be one of relu"),
        ("channels", [4, 0], r"model.channels=\[4,0\] holds 0: each element must be >= 1"),
        ("channels", [], r"model.channels=\[\] must not be empty"),
        ("kernel_size", 4, "kernel_size=4 must be odd"),
        ("dropout", 1.0, "model.dropout=1.0 must be >= 0 and < 1"),
    ],
)
def test_bad_options_are_config_errors(key, value, message):
    with pytest.raises(ConfigError, match=message):
        _harness({key: value}).components  # noqa: B018


def test_learns_a_spatial_label_well_above_chance():
    harness = _harness({"channels": [8, 16], "hidden": 32}, side=8)
    harness.steps(300)
    metrics = harness.components.task.evaluate(
        harness.components.model, "train", device=torch.device("cpu"), batch_size=256
    )
    assert metrics["acc/where"] > 0.6  # chance is 0.25
