"""toy-multitask: deterministic generated splits, labels from the stated generative model."""

from __future__ import annotations

import pytest
import torch

from twcore.contract.errors import ConfigError
from twcore.contract.spec import Role
from twcore.orchestration.config.compose import compose
from twcore.testing import Harness, TaskConformance, registry_with
from twcore.testing.harness import resolve


class TestToyMultitaskConformance(TaskConformance):
    task = "toy-multitask"


class TestToyMultitaskPeersConformance(TaskConformance):
    task = "toy-multitask"
    task_options = {"main": "", "num_classification": 2, "num_regression": 2}


def _harness(**options):
    registry = registry_with(
        [
            resolve("task", "toy-multitask", "toy-multitask"),
            resolve("method", "ew", "ew"),
            resolve("model", "mlp", "mlp"),
        ]
    )
    base = {
        "method": "ew",
        "task": "toy-multitask",
        "model": "mlp",
        "wandb.enabled": False,
        "device": "cpu",
    }
    return Harness(registry, {**base, **options})


def test_split_sizes_and_objectives_follow_the_config():
    task = _harness(
        **{
            "task.train_size": 100,
            "task.val_size": 20,
            "task.test_size": 30,
            "task.num_classification": 2,
            "task.num_regression": 1,
        }
    ).components.task
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 100, "val": 20, "test": 30}
    assert task.spec.objective_names == ("cls0", "cls1", "reg0")
    assert [o.role for o in task.spec.objectives] == [Role.MAIN, Role.AUXILIARY, Role.AUXILIARY]


def test_data_depends_on_data_seed_only():
    a = _harness(seed=1).components.task.split("train")
    b = _harness(seed=2).components.task.split("train")
    c = _harness(**{"task.data_seed": 5}).components.task.split("train")
    assert torch.equal(a.inputs, b.inputs)
    assert not torch.equal(a.inputs, c.inputs)


def test_labels_use_every_class_and_are_not_constant():
    task = _harness().components.task
    labels = task.split("train").targets["cls0"]
    assert set(labels.tolist()) == set(range(4))


def test_equal_weighting_learns_every_task_well_above_chance():
    harness = _harness(steps=300)
    harness.steps(300)
    metrics = harness.components.task.evaluate(
        harness.components.model, "test", device=torch.device("cpu"), batch_size=512
    )
    assert metrics["worst_acc"] > 0.5  # chance is 0.25 with 4 classes
    assert metrics["mse/reg0"] < 0.5 * harness.components.task.split("test").targets["reg0"].var()


def test_unknown_main_objective_is_a_config_error():
    with pytest.raises(
        ConfigError, match=r"options are invalid: main='cls9' is not an objective; "
    ):
        _harness(**{"task.main": "cls9"})


def test_zero_objectives_is_a_config_error():
    with pytest.raises(ConfigError, match="at least one objective"):
        _harness(**{"task.num_classification": 0, "task.num_regression": 0})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task.input_dim=0"], r"^task\.input_dim=0 must be >= 1$"),
        (["task.test_size=0"], r"^task\.test_size=0 must be >= 1$"),
        # A negative count is named by its bound, not by the checks that combine the counts.
        (["task.num_classification=-1"], r"^task\.num_classification=-1 must be >= 0$"),
        (["task.num_regression=-2", "task.main=''"], r"^task\.num_regression=-2 must be >= 0$"),
        (
            ["task.num_classes=1"],
            r"^task 'toy-multitask' options are invalid: num_classes=1 must be >= 2 when "
            "num_classification=3",
        ),
    ],
)
def test_the_composer_refuses_a_bad_option_naming_its_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose(["task=toy-multitask", *overrides])


def test_num_classes_is_unchecked_without_classification_tasks():
    overrides = ["task.num_classification=0", "task.num_classes=1", "task.main=reg0"]
    options = compose(["task=toy-multitask", *overrides]).sections["task"]
    assert (options.num_classification, options.num_classes) == (0, 1)
