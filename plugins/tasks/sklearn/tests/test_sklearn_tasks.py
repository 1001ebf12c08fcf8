"""digits and diabetes: the data is scikit-learn's, splits are disjoint and seeded, no leakage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes, load_digits

from twcore.contract.data_cache import CACHE_ENV
from twcore.contract.errors import ConfigError
from twcore.orchestration.config.compose import compose
from twcore.testing import Harness, TaskConformance, registry_with
from twcore.testing.harness import resolve


class TestDigitsConformance(TaskConformance):
    task = "digits"


class TestDigitsWithCNNConformance(TaskConformance):
    task = "digits"
    model = "cnn"
    model_options = {"channels": [4, 8], "hidden": 16}


class TestDiabetesConformance(TaskConformance):
    task = "diabetes"


def _harness(task, model="mlp", **options):
    registry = registry_with(
        [
            resolve("task", task, task),
            resolve("method", "ew", "ew"),
            resolve("model", model, model),
        ]
    )
    base = {"method": "ew", "task": task, "model": model, "wandb.enabled": False}
    return Harness(registry, {**base, "device": "cpu", **options})


def _task(name, **options):
    return _harness(name, **{f"task.{k}": v for k, v in options.items()}).components.task


def _row_keys(array):
    return [row.tobytes() for row in np.ascontiguousarray(array, dtype=np.float32)]


def test_digits_examples_are_sklearn_images_with_their_labels():
    reference = load_digits()
    lookup = dict(zip(_row_keys(reference.images / 16.0), reference.target, strict=True))
    task = _task("digits")
    seen = 0
    for split in ("train", "val", "test"):
        data = task.split(split)
        keys = _row_keys(data.inputs[:, 0].numpy())
        labels = [lookup[k] for k in keys]  # KeyError if an image is not sklearn's
        assert labels == data.targets["digit"].tolist()
        seen += len(data)
    assert seen == len(reference.target)
    assert task.split("train").inputs.shape[1:] == (1, 8, 8)


@pytest.mark.parametrize("name", ["digits", "diabetes"])
def test_splits_are_disjoint_cover_the_data_and_follow_the_fractions(name):
    task = _task(name)
    sizes = {split: len(task.split(split)) for split in ("train", "val", "test")}
    total = sum(sizes.values())
    assert total == (1797 if name == "digits" else 442)
    assert abs(sizes["train"] / total - 0.6) < 0.02
    assert abs(sizes["val"] / total - 0.2) < 0.02
    keys = {s: set(_row_keys(task.split(s).inputs.flatten(1).numpy())) for s in sizes}
    assert not keys["train"] & keys["val"]
    assert not keys["train"] & keys["test"]
    assert not keys["val"] & keys["test"]


def test_digits_splits_are_stratified():
    counts = torch.bincount(_task("digits").split("val").targets["digit"], minlength=10)
    assert counts.min() >= 33 and counts.max() <= 38  # ~20% of 174-183 per class


@pytest.mark.parametrize("name", ["digits", "diabetes"])
def test_split_depends_on_data_seed_only(name, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    a = _harness(name, seed=1).components.task.split("train").inputs
    b = _harness(name, seed=2).components.task.split("train").inputs
    c = _harness(name, **{"task.data_seed": 7}).components.task.split("train").inputs
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_diabetes_is_standardised_with_training_statistics_only():
    reference = load_diabetes(scaled=False)
    task = _task("diabetes")
    train = task.split("train")
    assert train.inputs.mean(dim=0).abs().max() < 1e-5
    assert (train.inputs.std(dim=0) - 1).abs().max() < 1e-4
    assert abs(float(train.targets["target"].mean())) < 1e-5
    y_std = task.target_std
    assert y_std == pytest.approx(float(np.std(reference.target, ddof=1)), rel=0.15)
    for split in ("val", "test"):  # standardised with train statistics, not their own
        data = task.split(split)
        assert data.inputs.mean(dim=0).abs().max() > 1e-3
        assert abs(float(data.targets["target"].mean())) > 1e-4


def test_equal_weighting_learns_digits_and_diabetes():
    cpu = torch.device("cpu")
    digits = _harness("digits", steps=300)
    digits.steps(300)
    acc = digits.components.task.evaluate(
        digits.components.model, "test", device=cpu, batch_size=512
    )
    assert acc["acc"] > 0.85  # chance is 0.1
    diabetes = _harness("diabetes", steps=300)
    diabetes.steps(300)
    metrics = diabetes.components.task.evaluate(
        diabetes.components.model, "test", device=cpu, batch_size=512
    )
    assert metrics["mse"] < 0.7  # predicting the training mean gives about 1
    assert metrics["mse_raw"] == pytest.approx(
        metrics["mse"] * diabetes.components.task.target_std**2
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"task.train_fraction": 0.0}, r"^task\.train_fraction=0\.0 must be > 0 and < 1$"),
        ({"task.val_fraction": 1.5}, r"^task\.val_fraction=1\.5 must be > 0 and < 1$"),
        (
            {"task.train_fraction": 0.7, "task.val_fraction": 0.3},
            r"^task 'digits' options are invalid: train_fraction \+ val_fraction = 1 must be < 1",
        ),
    ],
)
def test_bad_fractions_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        _harness("digits", **options).components  # noqa: B018


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["task=diabetes", "task.train_fraction=1"],
            r"^task\.train_fraction=1\.0 must be > 0 and < 1$",
        ),
        (["task=diabetes", "task.val_fraction=nan"], r"^task\.val_fraction=nan must be a finite"),
        (
            ["task=digits", "task.val_fraction=-0.2"],
            r"^task\.val_fraction=-0\.2 must be > 0 and < 1$",
        ),
    ],
)
def test_the_composer_refuses_a_bad_fraction_naming_its_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose(overrides)
