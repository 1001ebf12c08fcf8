"""Your data and model without packaging: tasks from arrays and datasets, a model from any
trunk, registered in-process, run by every compatible method."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import twcore
from twcore.contract import Objective, model_from_trunk, task_from_arrays, task_from_dataset
from twcore.contract.errors import ConfigError
from twcore.contract.spec import Capability, ObjectiveKind, Role
from twcore.orchestration.registry import PluginRegistry, use_registry
from twcore.testing import DecisionLayerConformance, TaskConformance

QUICK = ["steps=12", "eval_every=6", "batch_size=32", "wandb.enabled=false"]


def _arrays(n: int = 400, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    generator = np.random.default_rng(seed)
    inputs = generator.normal(size=(n, 5)).astype(np.float32)
    return inputs, {
        "label": (inputs[:, 0] - inputs[:, 1] > 0).astype(np.int64) + (inputs[:, 2] > 1),
        "parity": (inputs[:, 3] > 0).astype(np.int64),
        "level": inputs[:, 4] * 2 + 1,
    }


OBJECTIVES = {"label": "classification", "parity": "classification", "level": "regression"}


def _task(**options):
    inputs, targets = _arrays()
    return task_from_arrays(inputs, targets, objectives=OBJECTIVES, main="label", **options)


@pytest.fixture
def registry():
    """A fresh copy of the installed plugins for the test (in-process registrations vanish)."""
    with use_registry(PluginRegistry()) as fresh:
        yield fresh


def test_the_spec_is_read_from_the_arrays():
    spec = _task()(None).spec
    assert spec.input_shape == (5,)
    assert {h.name: h.size for h in spec.heads} == {"label": 3, "parity": 2, "level": 1}
    assert [(o.name, o.kind, o.role) for o in spec.objectives] == [
        ("label", ObjectiveKind.CLASSIFICATION, Role.MAIN),
        ("parity", ObjectiveKind.CLASSIFICATION, Role.AUXILIARY),
        ("level", ObjectiveKind.REGRESSION, Role.AUXILIARY),
    ]
    assert spec.has(Capability.VALIDATION)
    assert (spec.primary_metric, spec.primary_mode) == ("main_acc", "max")


def test_fraction_splits_partition_the_data_and_do_not_depend_on_the_run():
    inputs, _ = _arrays()
    splits = _task(val=0.25, test=0.15)(None).splits
    assert {name: len(split) for name, split in splits.items()} == {
        "train": 240,
        "val": 100,
        "test": 60,
    }
    rows = torch.cat([splits[name].inputs for name in ("train", "val", "test")])
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, torch.tensor(inputs).tolist()))
    again = _task(val=0.25, test=0.15)(None).splits
    assert torch.equal(again["val"].inputs, splits["val"].inputs)
    other = _task(val=0.25, test=0.15, split_seed=1)(None).splits
    assert not torch.equal(other["val"].inputs, splits["val"].inputs)


def test_explicit_splits_and_no_validation_split():
    inputs, targets = _arrays()
    held_out = _arrays(50, seed=1)
    task = task_from_arrays(inputs, targets, objectives=OBJECTIVES, val=None, test=held_out)(None)
    assert len(task.splits["train"]) == 400 and "val" not in task.splits
    assert torch.equal(task.splits["test"].inputs, torch.tensor(held_out[0]))
    assert not task.spec.has(Capability.VALIDATION)
    assert all(o.role is Role.PEER for o in task.spec.objectives)
    assert task.spec.primary_metric == "avg_loss"


def test_a_dataset_gives_the_task_the_arrays_give():
    inputs, targets = _arrays()
    names = list(OBJECTIVES)
    dataset = TensorDataset(torch.tensor(inputs), *(torch.tensor(targets[name]) for name in names))

    class Pairs(torch.utils.data.Dataset):  # items (input, (label, parity, level))
        def __len__(self):
            return len(dataset)

        def __getitem__(self, index):
            x, *ys = dataset[index]
            return x, tuple(ys)

    from_dataset = task_from_dataset(Pairs(), objectives=OBJECTIVES, main="label")(None)
    from_arrays = _task()(None)
    for name, split in from_arrays.splits.items():
        other = from_dataset.splits[name]
        assert torch.equal(other.inputs, split.inputs)
        for key, value in split.targets.items():
            assert torch.equal(other.targets[key], value), key


class TestArrayTaskConformance(TaskConformance):
    task = _task()


@pytest.mark.parametrize("method", ["ew", "gradcos", "ldro", "alphavil", "adalfl", "taskmet"])
def test_every_method_runs_on_a_task_from_numpy_arrays(registry, tmp_path, method):
    twcore.register("task", "numpy-data", _task())
    result = twcore.run(
        [f"method={method}", "task=numpy-data", *QUICK, f"run_dir={tmp_path / method}"]
    )
    assert result.summary["status"] == "completed"
    assert {"main_acc", "acc/parity", "mse/level"} <= set(result.metrics["test"])


def test_a_task_from_arrays_learns(registry, tmp_path):
    twcore.register("task", "numpy-data", _task())
    result = twcore.run(
        ["task=numpy-data", "steps=300", "wandb.enabled=false", f"run_dir={tmp_path / 'r'}"]
    )
    assert result.metrics["test"]["acc/parity"] > 0.9  # chance is about 0.5


class _BestOfItems:
    """Pick among 4 items by the predicted values (softmax at temperature 0.1 to train, the
    argmax exactly); the objective is the true value of the pick. A per-instance layout: one
    feature vector per instance, the head predicts the 4 values."""

    head = "worth"
    layout = "per-instance"
    linear = True

    def decide(self, predictions, batch):
        if not torch.isfinite(predictions).all():
            raise ValueError("the predicted values must be finite")
        return torch.softmax(predictions / 0.1, dim=1)

    def objective(self, decisions, batch):
        return (decisions * batch.targets["worth"]).sum(dim=1)

    def values(self, predictions):
        return predictions

    def true_values(self, batch):
        return batch.targets["worth"]

    def solve(self, values, batch):
        if not torch.isfinite(values).all():
            raise ValueError("the values must be finite")
        return torch.nn.functional.one_hot(values.argmax(dim=1), values.shape[1]).to(values.dtype)


def _decision_task(stored_optima: bool = False, layer: object | None = None):
    generator = np.random.default_rng(0)
    features = generator.normal(size=(300, 3)).astype(np.float32)
    values = np.tanh(features @ generator.normal(size=(3, 4))).astype(np.float32)
    # The users' own optima for the true values (PyEPO's `sols`): one-hot of the best item.
    context = {"true_decisions": np.eye(4, dtype=np.float32)[values.argmax(1)]}
    return task_from_arrays(
        features,
        {"worth": values},
        objectives={"worth": "regression"},
        context=context if stored_optima else None,
        decision=layer if layer is not None else _BestOfItems(),
    )


class _CountingBestOfItems(_BestOfItems):
    def __init__(self):
        self.solved = 0

    def solve(self, values, batch):
        self.solved += len(values)
        return super().solve(values, batch)


def test_a_users_stored_true_optima_are_read_not_solved():
    """Evaluation's regret reads a user's ``context["true_decisions"]``: the same metrics as
    solving them, and half the solves (SPO+ runs on them below)."""

    class Heads(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.linear = nn.Linear(3, 4)

        def forward(self, x):
            return {"worth": self.linear(x)}

    results, solved = {}, {}
    for stored in (False, True):
        layer = _CountingBestOfItems()
        task = _decision_task(stored, layer)(None)
        layer.solved = 0  # (building the task checked a few stored optima)
        results[stored] = task.evaluate(Heads(), "test", device=torch.device("cpu"), batch_size=16)
        solved[stored] = layer.solved
    assert results[True] == results[False]
    assert solved[True] * 2 == solved[False]  # each instance's prediction, not its optimum


class TestAnArrayTasksStoredOptima(DecisionLayerConformance):
    task = _decision_task(stored_optima=True)


@pytest.mark.parametrize(
    ("optima", "message"),
    [
        (lambda best: best[:, :3], r"rows of shape \(3,\), but the decision layer's solve"),
        (
            lambda best: np.roll(best, 1, axis=1),
            r"train context\[.true_decisions.\]: instance \d+ is not the optimum for its true",
        ),
    ],
)
def test_stored_true_optima_that_are_not_the_layers_are_refused(optima, message):
    generator = np.random.default_rng(0)
    features = generator.normal(size=(40, 3)).astype(np.float32)
    values = np.tanh(features @ generator.normal(size=(3, 4))).astype(np.float32)
    best = np.eye(4, dtype=np.float32)[values.argmax(1)]
    with pytest.raises(ValueError, match=message):
        task_from_arrays(
            features,
            {"worth": values},
            objectives={"worth": "regression"},
            context={"true_decisions": optima(best)},
            decision=_BestOfItems(),
        )


def test_a_decision_task_scores_the_layers_decisions(tmp_path):
    task = _decision_task()(None)
    assert task.spec.has(Capability.DECISION)
    assert (task.spec.primary_metric, task.spec.primary_mode) == ("objective", "max")
    linear = nn.Linear(3, 4)

    class Heads(nn.Module):
        def forward(self, x):
            return {"worth": linear(x)}

    metrics = task.evaluate(Heads(), "test", device=torch.device("cpu"), batch_size=16)
    split = task.splits["test"]
    with torch.no_grad():  # the exact decisions: the argmax of each instance's predictions
        picked = split.targets["worth"].gather(1, linear(split.inputs).argmax(1, keepdim=True))
    best = split.targets["worth"].max(dim=1).values
    assert metrics["objective"] == pytest.approx(float(picked.double().mean()), rel=1e-6)
    assert metrics["regret"] == pytest.approx(float((best - picked[:, 0]).double().mean()))
    expected = float((best - picked[:, 0]).double().sum() / best.double().abs().sum())
    assert metrics["normalised_regret"] == pytest.approx(expected, rel=1e-6)
    assert set(task.metric_names) >= set(metrics)
    assert task.spec.has(Capability.DECISION_SOLVER) and task.spec.has(Capability.LINEAR_DECISION)


class TestAnArrayTasksDecisionLayer(DecisionLayerConformance):
    task = _decision_task()


@pytest.mark.parametrize("method", ["taskmet", "dfl", "two-stage", "spo-plus"])
def test_decision_methods_run_on_a_users_decision_layer(registry, tmp_path, method):
    twcore.register("task", "best-item", _decision_task(stored_optima=method == "spo-plus"))
    result = twcore.run(
        [
            f"method={method}",
            "task=best-item",
            "model=linear",
            "steps=4",
            "eval_every=2",
            "wandb.enabled=false",
            f"run_dir={tmp_path / method}",
        ]
    )
    assert result.summary["status"] == "completed"
    assert "objective" in result.metrics["test"]


def test_a_model_from_a_trunk_builds_a_head_per_task_head_and_runs(registry, tmp_path):
    twcore.register("task", "numpy-data", _task())
    twcore.register(
        "model", "my-trunk", model_from_trunk(lambda spec: nn.Sequential(nn.Linear(5, 7)))
    )
    spec = _task()(None).spec
    torch.manual_seed(0)
    built = model_from_trunk(lambda spec: nn.Sequential(nn.Linear(5, 7), nn.ReLU()))(None, spec)
    assert {name: head.out_features for name, head in built.heads.items()} == {
        "label": 3,
        "parity": 2,
        "level": 1,
    }
    outputs = built(torch.zeros(2, 5))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "label": (2, 3),
        "parity": (2, 2),
        "level": (2, 1),
    }
    result = twcore.run(["task=numpy-data", "model=my-trunk", *QUICK, f"run_dir={tmp_path}/r"])
    assert result.summary["status"] == "completed"


def test_a_trunk_module_is_copied_and_reinitialised_for_each_model():
    template = nn.Sequential(nn.Linear(5, 4), nn.Tanh())
    Model = model_from_trunk(template)
    spec = _task()(None).spec
    torch.manual_seed(0)
    first = Model(None, spec)
    torch.manual_seed(1)
    second = Model(None, spec)
    assert first.trunk is not template and first.trunk is not second.trunk
    assert not torch.equal(first.trunk[0].weight, second.trunk[0].weight)
    assert not torch.equal(first.trunk[0].weight, template[0].weight)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"targets": {"label": [0] * 400}}, "targets has no 'parity'"),
        ({"objectives": {"label": "ranking"}}, "kind 'ranking' is not one of classification"),
        ({"main": "colour"}, "main='colour' is not one of the objectives"),
        ({"val": 0.7, "test": 0.4}, "leave an empty split"),
        ({"val": 1.5}, "val=1.5: a fraction must be in \\(0, 1\\)"),
        ({"test": None}, "test=None: every task needs a test split"),
        ({"objectives": {"label": "custom"}}, "kind 'custom' is not one of classification, regr"),
        ({"objectives": {"label": Objective(size=2)}}, "size=2, but its targets need 3 classes"),
        ({"decision": object()}, "is not a decision layer: it needs a 'head' attribute"),
        ({"inputs": np.zeros((399, 5))}, "inputs: batch targets\\['label'\\] has 400 rows"),
        ({"targets": {**_arrays()[1], "label": np.full(400, 0.5)}}, "integer class labels"),
        ({"objectives": {"label": Objective(role="leader")}}, "role 'leader' is not one of"),
        (
            {"targets": {"values": [0] * 400}, "objectives": {"values": "classification"}},
            "head name 'values' is an attribute of torch.nn.ModuleDict",
        ),
    ],
)
def test_bad_data_is_a_clear_error(arguments, message):
    inputs, targets = _arrays()
    call = {"inputs": inputs, "targets": targets, "objectives": OBJECTIVES, **arguments}
    with pytest.raises(ValueError, match=message):
        task_from_arrays(call.pop("inputs"), call.pop("targets"), **call)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("task", "Bad Name", None), "names are lowercase letters and digits"),
        (("dataset", "mine", None), "unknown plugin kind 'dataset'"),
        (("task", "digits", None), "task 'digits' is already registered by 'sklearn'"),
        (("task", "mine", nn.Linear), "is not a subclass of twcore.contract.task.Task"),
    ],
)
def test_bad_registrations_are_config_errors(registry, arguments, message):
    kind, name, cls = arguments
    with pytest.raises(ConfigError, match=message):
        twcore.register(kind, name, cls or _task())


@pytest.mark.parametrize("name", ["ew-", "-ew", "a--b", "a._b", "Ew", "ew\n", "a b", "a=b", ""])
def test_the_name_rule_refuses_what_its_sentence_refuses(registry, name):
    with pytest.raises(ConfigError, match=r"one '-', '_' or '\.' between them"):
        twcore.register("task", name, _task())


@pytest.mark.parametrize("name", ["ew", "group-dro", "mnist_multitask", "v1.2", "9lives"])
def test_the_name_rule_accepts_what_its_sentence_accepts(registry, name):
    twcore.register("task", name, _task())
    assert registry.get("task", name).name == name


def test_registering_a_name_again_replaces_it(registry, tmp_path):
    twcore.register("task", "numpy-data", _task())
    replacement = _task(val=0.5)
    twcore.register("task", "numpy-data", replacement)
    assert registry.get("task", "numpy-data").cls is replacement


def test_roles_given_explicitly_are_kept_beside_a_main_objective():
    inputs, targets = _arrays()
    objectives = {
        "label": "classification",
        "parity": Objective(role="peer"),
        "level": "regression",
    }
    spec = task_from_arrays(inputs, targets, objectives=objectives, main="label")(None).spec
    assert [o.role for o in spec.objectives] == [Role.MAIN, Role.PEER, Role.AUXILIARY]


def test_a_class_seen_only_in_the_held_out_data_widens_the_head():
    inputs, targets = _arrays()
    held_out = (inputs[:20], {**{k: v[:20] for k, v in targets.items()}, "label": np.full(20, 7)})
    task = task_from_arrays(inputs, targets, objectives=OBJECTIVES, test=held_out)(None)
    assert {h.name: h.size for h in task.spec.heads}["label"] == 8


def test_context_is_detached_float32_and_travels_with_every_split():
    inputs, targets = _arrays()
    costs = torch.rand(400, 4, dtype=torch.float64, requires_grad=True) * 2
    held_out = (inputs[:30], {k: v[:30] for k, v in targets.items()}, {"costs": np.ones((30, 4))})
    task = task_from_arrays(
        inputs,
        targets,
        objectives=OBJECTIVES,
        context={"costs": costs},
        test=held_out,
        val=0.25,
    )(None)
    for name, split in task.splits.items():
        assert split.context["costs"].dtype == torch.float32, name
        assert not split.context["costs"].requires_grad, name
    assert torch.equal(task.splits["test"].context["costs"], torch.ones(30, 4))
    train_and_val = torch.cat(
        [task.splits["train"].context["costs"], task.splits["val"].context["costs"]]
    )
    assert sorted(train_and_val.sum(1).tolist()) == pytest.approx(
        sorted(costs.detach().float().sum(1).tolist())
    )
    with pytest.raises(ValueError, match="test context has \\[\\], needs \\['costs'\\]"):
        task_from_arrays(
            inputs, targets, objectives=OBJECTIVES, context={"costs": costs}, test=held_out[:2]
        )


def test_a_dataset_with_named_targets_gives_the_task_the_arrays_give():
    inputs, targets = _arrays()

    class Named(torch.utils.data.Dataset):
        def __len__(self):
            return len(inputs)

        def __getitem__(self, index):
            return inputs[index], {name: targets[name][index] for name in OBJECTIVES}

    from_dataset = task_from_dataset(Named(), objectives=OBJECTIVES, main="label")(None)
    for name, split in _task()(None).splits.items():
        assert torch.equal(from_dataset.splits[name].inputs, split.inputs)
        for key, value in split.targets.items():
            assert torch.equal(from_dataset.splits[name].targets[key], value), key


def test_images_train_through_a_convolutional_trunk(registry, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images[:, None] / 16  # [N, 1, 8, 8]
    twcore.register(
        "task",
        "digit-images",
        task_from_arrays(images, {"digit": digits.target}, objectives={"digit": "classification"}),
    )
    twcore.register(
        "model",
        "small-cnn",
        model_from_trunk(lambda spec: nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten())),
    )
    result = twcore.run(
        [
            "task=digit-images",
            "model=small-cnn",
            "steps=150",
            "wandb.enabled=false",
            f"run_dir={tmp_path / 'r'}",
        ]
    )
    assert result.metrics["test"]["acc"] > 0.5  # chance is 0.1


def test_a_default_registered_in_process_wins_over_the_installed_one(registry, tmp_path):
    twcore.register("task", "numpy-data", _task(), default=True)
    assert registry.default_name("task") == "numpy-data"
    result = twcore.run(["steps=2", "wandb.enabled=false", f"run_dir={tmp_path / 'r'}"])
    assert result.summary["config"]["task"]["name"] == "numpy-data"
