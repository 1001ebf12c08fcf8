"""AdaLFL: the loss network, the meta-gradient against finite differences, the start at the base
loss, the paper's claim on a small case, conformance and errors."""

from __future__ import annotations

import copy
import dataclasses
import io
import itertools
import json
from pathlib import Path

import pytest
import torch
from torch.func import functional_call
from twcore_method_adalfl import LearnedLoss, LossNetwork, SmoothLeakyReLU
from twcore_method_adalfl.meta_gradient import learned_gradient
from twcore_method_adalfl.optimizer_step_vjp import OptimizerStepVJP
from twcore_method_adalfl.rule import AdaLFL, LearnedObjective, MetaSlot

import twcore
from twcore.contract.batch import Batch
from twcore.contract.errors import ConfigError, IncompatiblePairingError
from twcore.contract.method import method_generator, method_stream_seed
from twcore.contract.spec import ObjectiveKind, TaskSpec
from twcore.contract.task import stack_objective_losses
from twcore.orchestration import api
from twcore.orchestration.engine.checkpoint import load_checkpoint
from twcore.testing import Harness, MethodConformance, plugin_harness, registry_with
from twcore.testing.harness import resolve
from twcore.testing.own_loop import assert_same_parameters, engine_parameters, plain_setup
from twcore.testing.reference import ReferenceTask

TOY = {"train_size": 200, "val_size": 100, "test_size": 100}


class TestAdaLFLOnClassificationConformance(MethodConformance):
    method = "adalfl"
    task = "digits"
    method_options = {"plot_every": 2}


class TestAdaLFLOnMixedObjectivesConformance(MethodConformance):
    """toy-multitask has classification and regression objectives."""

    method = "adalfl"
    task = "toy-multitask"
    task_options = TOY
    method_options = {"meta_data": "val"}


class TestAdaLFLOfflineInitConformance(MethodConformance):
    method = "adalfl"
    task = "diabetes"
    method_options = {"init": "offline", "offline_steps": 3, "meta_data": "train"}
    run_options = {"optim.name": "sgd", "optim.lr": 0.05, "optim.grad_clip": 0.5}


@pytest.mark.parametrize("meta_data", ["next", "train"])
def test_resume_rebuilds_the_pending_meta_update_with_its_dropout_masks(
    tmp_path: Path, meta_data: str
) -> None:
    """A checkpoint falls between a step and the meta-update it left for the next step: the
    resumed run rebuilds that step's graphs (same θ, batch, φ and dropout draws) and ends with
    exactly the uninterrupted run's metrics and loss network."""
    options = {
        "method.meta_data": meta_data,
        "method.plot_every": 0,
        "model.dropout": 0.3,
        "model.hidden": [16],
        "optim.grad_clip": 0.5,
        "eval_every": 0,
    }
    whole = _run(tmp_path, "whole", method="adalfl", steps=8, **options)
    _run(tmp_path, "split", method="adalfl", steps=5, **options)
    resumed = api.resume(tmp_path / "split", ["steps=8"])
    assert resumed.metrics == whole.metrics
    phi = [
        load_checkpoint(tmp_path / run / "checkpoints" / "last.pt")["method"]["losses"]
        for run in ("whole", "split")
    ]
    for name, value in phi[0].items():
        torch.testing.assert_close(phi[1][name], value, rtol=0, atol=0)


class _OnceDifferentiableSquare(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * x * grad


def test_a_model_without_double_backward_is_an_incompatible_pairing() -> None:
    """The meta-gradient differentiates the model's backward pass once more; a model that
    cannot be is named in a one-line usage error, not a bare autograd traceback."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    leaves = {n: p.detach().clone().requires_grad_() for n, p in layer.named_parameters()}
    inputs = torch.randn(4, 3)
    outputs = {"y": _OnceDifferentiableSquare.apply(functional_call(layer, leaves, (inputs,)))}
    loss = LearnedLoss(ObjectiveKind.REGRESSION, LossNetwork([4]))

    def output_gradients(detached):
        found = loss.gradient_pass(detached["y"], torch.zeros_like(detached["y"]))
        return found.value.sum(), {"y": found.gradient}, lambda u: found.phi_gradients(u["y"])

    step = learned_gradient(outputs, leaves, output_gradients)
    vjp = OptimizerStepVJP(diagonal={n: torch.full_like(p, -0.1) for n, p in leaves.items()})
    pending = step.pending(vjp, record={})
    with pytest.raises(IncompatiblePairingError, match=r"adalfl.*double backward"):
        pending.meta_gradient({n: torch.ones_like(p) for n, p in leaves.items()})


# -- the loss network ------------------------------------------------------------------------


def test_smooth_leaky_relu_is_the_papers_formula() -> None:
    x = torch.linspace(-6, 6, 25, dtype=torch.float64)
    expected = 0.25 * x + 0.75 * torch.log1p(torch.exp(2 * x)) / 2
    torch.testing.assert_close(SmoothLeakyReLU()(x), expected)
    slopes = torch.func.vmap(torch.func.grad(SmoothLeakyReLU()))(x)
    assert slopes[0] == pytest.approx(0.25, abs=1e-4) and slopes[-1] == pytest.approx(1, abs=1e-4)


def test_loss_network_shape_and_zero_start() -> None:
    network = LossNetwork([50, 50])
    assert [tuple(p.shape) for p in network.parameters()] == [(50, 2), (50, 50), (1, 50)]
    assert all("bias" not in name for name, _ in network.named_parameters())
    zero = LossNetwork([50, 50], zero_output=True)
    assert torch.equal(zero(torch.rand(7, 3, 2)), torch.zeros(7, 3))


def test_classification_loss_sums_the_network_over_classes_without_a_loop() -> None:
    torch.manual_seed(0)
    network = LossNetwork([5])
    loss = LearnedLoss(ObjectiveKind.CLASSIFICATION, network)
    logits, labels = torch.randn(4, 3), torch.tensor([0, 2, 1, 2])
    probabilities = torch.softmax(logits, dim=1)
    expected = torch.stack(
        [
            sum(
                network(torch.stack([probabilities[b, c], torch.tensor(float(labels[b] == c))]))
                for c in range(3)
            )
            for b in range(4)
        ]
    )
    torch.testing.assert_close(loss(logits, labels), expected)


def test_regression_loss_averages_the_network_over_outputs() -> None:
    torch.manual_seed(0)
    network = LossNetwork([5])
    loss = LearnedLoss(ObjectiveKind.REGRESSION, network)
    predictions, targets = torch.randn(4, 2), torch.randn(4, 2)
    pairs = torch.stack([predictions, targets], dim=-1)
    torch.testing.assert_close(loss(predictions, targets), network(pairs).mean(dim=1))
    single = loss(predictions[:, :1], targets[:, 0])  # [B] targets for a [B, 1] head
    torch.testing.assert_close(single, network(pairs[:, :1]).mean(dim=1))


@pytest.mark.parametrize(
    ("kind", "shape"),
    [
        (ObjectiveKind.CLASSIFICATION, (6, 4)),
        (ObjectiveKind.REGRESSION, (6, 3)),
        (ObjectiveKind.REGRESSION, (6,)),
    ],
)
@pytest.mark.parametrize("hidden", [[7, 5], [6], [4, 5, 3]])
def test_the_written_out_gradient_is_autograds(
    kind: ObjectiveKind, shape: tuple, hidden: list[int]
) -> None:
    """gradient_pass's value and derivative in the predictions, and that derivative's own
    derivative in φ along a direction, equal autograd's: a create_graph backward pass and a
    second backward pass through it (float64, to rounding)."""
    torch.manual_seed(0)
    loss = LearnedLoss(kind, LossNetwork(hidden)).double()
    predictions = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    if kind == ObjectiveKind.CLASSIFICATION:
        targets = torch.randint(0, shape[1], (shape[0],))
    else:
        targets = torch.randn(shape, dtype=torch.float64)
    expected = loss(predictions, targets)
    (gradient,) = torch.autograd.grad(expected.sum(), predictions, create_graph=True)
    found = loss.gradient_pass(predictions, targets)
    torch.testing.assert_close(found.value, expected.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(found.gradient, gradient.detach(), rtol=1e-12, atol=1e-14)
    direction = torch.randn_like(gradient)
    phi = list(loss.parameters())
    for ours, reference in zip(
        found.phi_gradients(direction),
        torch.autograd.grad(gradient, phi, grad_outputs=direction),
        strict=True,
    ):
        torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-14)


def test_a_custom_objective_has_no_learned_loss() -> None:
    with pytest.raises(ValueError, match="classification or regression"):
        LearnedLoss(ObjectiveKind.CUSTOM, LossNetwork())


# -- the meta-gradient -----------------------------------------------------------------------


TINY_MLP = {"model.hidden": [4]}
TINY_CNN = {"model.channels": [2, 3], "model.kernel_size": 3, "model.hidden": 4}


@pytest.mark.parametrize(
    ("task", "init", "optimizer", "dropout", "model", "model_options"),
    [
        ("digits", "offline", "adam", 0.0, "mlp", TINY_MLP),
        ("diabetes", "base", "sgd", 0.0, "mlp", TINY_MLP),
        ("diabetes", "offline", "rmsprop", 0.0, "mlp", TINY_MLP),
        ("digits", "base", "adamw", 0.3, "mlp", TINY_MLP),
        # Convolutions: their backward pass is differentiated by cotangent_convolutions.
        ("digits", "base", "adam", 0.3, "cnn", TINY_CNN),
    ],
)
def test_meta_gradient_matches_finite_differences(
    task: str, init: str, optimizer: str, dropout: float, model: str, model_options: dict
) -> None:
    """d meta-loss / dφ through the differentiable lookahead, in float64 on a tiny model, after
    two real steps (so the optimiser has state), against central differences along a random
    direction of φ. With dropout every evaluation starts from the same RNG state, so the
    forward-mode pass must replay the forward pass's dropout masks to agree."""
    harness = plugin_harness(
        "adalfl",
        task=task,
        model=model,
        options={
            **model_options,
            "model.dropout": dropout,
            "batch_size": 8,
            "method.init": init,
            "method.offline_steps": 0,
            "method.hidden": [6, 6],
            "optim.name": optimizer,
            "optim.lr": 0.05,
            "optim.grad_clip": 5.0,
        },
    )
    harness.steps(2)
    method, model = harness.components.method, harness.components.model
    model.double()
    method.rule.loss_networks.double()
    for state in harness.components.optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value) and value.is_floating_point() and key != "step":
                state[key] = value.double()

    def double(batch):
        return dataclasses.replace(batch, inputs=batch.inputs.double())

    batch, meta_batch = double(next(harness.stream)), double(next(harness.stream))
    optimizer = harness.components.optimizer
    phi = list(method.rule.loss_networks.parameters())
    generator = torch.Generator().manual_seed(1)
    direction = [torch.randn(p.shape, generator=generator, dtype=torch.float64) for p in phi]

    # The method's own computation: a real step on a copy of the model and its optimiser, then
    # the meta-objective at the parameters it lands on, pulled back through what it kept.
    model_copy, optimizer_copy = copy.deepcopy((model, optimizer))
    slot = MetaSlot()
    torch.manual_seed(5)
    method.rule.step(model_copy, optimizer_copy, batch, slot=slot)
    leaves = {n: p.detach().clone().requires_grad_() for n, p in model_copy.named_parameters()}
    outputs = functional_call(model_copy, leaves, (meta_batch.inputs,))
    meta = stack_objective_losses(harness.components.task, outputs, meta_batch).mean()
    at_lookahead = dict(zip(leaves, torch.autograd.grad(meta, list(leaves.values())), strict=True))
    assert slot.pending is not None
    analytic = sum(
        (g * d).sum()
        for g, d in zip(slot.pending.meta_gradient(at_lookahead), direction, strict=True)
    )
    textbook_loss = _textbook_meta_loss(method, batch, meta_batch)
    assert float(textbook_loss.detach()) == pytest.approx(
        float(meta.detach()), rel=1e-9
    )  # the same lookahead
    textbook = sum(
        (g * d).sum()
        for g, d in zip(torch.autograd.grad(textbook_loss, phi), direction, strict=True)
    )
    eps = 1e-5

    def shifted(sign: float) -> float:
        with torch.no_grad():
            for p, d in zip(phi, direction, strict=True):
                p.add_(sign * eps * d)
        value = float(_textbook_meta_loss(method, batch, meta_batch).detach())
        with torch.no_grad():
            for p, d in zip(phi, direction, strict=True):
                p.sub_(sign * eps * d)
        return value

    numeric = (shifted(1.0) - shifted(-1.0)) / (2 * eps)
    assert abs(float(analytic)) > 1e-6  # the check is not vacuous
    assert float(analytic) == pytest.approx(numeric, rel=1e-5, abs=1e-9)
    # The two compute g with different ops (the loss network's chain rule written out, against
    # autograd's): last-bit differences, which RMSprop's 1/√v can amplify to about 1e-8.
    assert float(textbook) == pytest.approx(float(analytic), rel=1e-6, abs=1e-12)


def _textbook_meta_loss(method, batch, meta_batch) -> torch.Tensor:
    """The rule's textbook meta-objective (the plugin's readable form: the model's create_graph
    backward pass and the differentiable lookahead), with the same dropout draws."""
    torch.manual_seed(5)
    ctx = method.ctx
    return method.rule.meta_objective(ctx.model, ctx.optimizer, batch, meta_batch).meta_loss


# -- the start at the base loss --------------------------------------------------------------


def _run(tmp_path: Path, name: str, **options) -> api.RunResult:
    base = {
        "task": "digits",
        "model": "mlp",
        "steps": 40,
        "eval_every": 20,
        "log_every": 1,
        "wandb.enabled": False,
        "run_dir": str(tmp_path / name),
    }
    return api.run({**base, **options})


def _train_losses(run_dir: Path) -> list[float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    return [r["train/loss/digit"] for r in records if "train/loss/digit" in r]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_base_init_with_meta_lr_zero_is_plain_training(tmp_path: Path, optimizer: str) -> None:
    plain = _run(tmp_path, "plain", method="ew", **{"optim.name": optimizer})
    learned = _run(
        tmp_path, "adalfl", method="adalfl", **{"optim.name": optimizer, "method.meta_lr": 0.0}
    )
    assert learned.metrics == plain.metrics
    assert _train_losses(tmp_path / "adalfl") == _train_losses(tmp_path / "plain")


def test_the_base_step_is_the_lookahead(tmp_path: Path) -> None:
    """With plain SGD a step first meta-updates φ (for the previous step, whose lookahead is the
    current θ), then moves θ to θ − lr·∇θ ℓφ(θ) with that φ: the lookahead itself, with no
    second forward/backward pass."""
    harness = plugin_harness(
        "adalfl",
        task="digits",
        options={
            "optim.name": "sgd",
            "optim.momentum": 0.0,
            "optim.lr": 0.1,
            "method.meta_lr": 0.1,
        },
    )
    harness.steps(3)  # the network has moved away from zero
    method, model = harness.components.method, harness.components.model
    batch = next(harness.stream)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    phi_before = [p.detach().clone() for p in method.rule.loss_networks.parameters()]
    method.train_step(batch)
    assert any(
        not torch.equal(p, q)
        for p, q in zip(phi_before, method.rule.loss_networks.parameters(), strict=True)
    )
    leaves = {n: value.clone().requires_grad_() for n, value in before.items()}
    learned, _ = method.rule.learned_losses(functional_call(model, leaves, (batch.inputs,)), batch)
    grads = torch.autograd.grad(learned.mean(), list(leaves.values()))
    for (name, parameter), g in zip(model.named_parameters(), grads, strict=True):
        torch.testing.assert_close(parameter.detach(), before[name] - 0.1 * g)


# -- the paper's claim on a small case -------------------------------------------------------


def test_online_learned_loss_beats_cross_entropy_where_the_base_step_is_too_small(
    tmp_path: Path,
) -> None:
    """Online adaptation tracks the meta-objective as training goes on; one way it helps is by
    rescaling the loss (the paper's implicit learning-rate schedule). With plain SGD at a step
    far too small for cross-entropy, AdaLFL ends with a clearly lower test loss and error."""
    common = {"optim.name": "sgd", "optim.lr": 0.01, "optim.momentum": 0.0, "steps": 150}
    plain = _run(tmp_path, "plain", method="ew", **common)
    learned = _run(tmp_path, "adalfl", method="adalfl", **common, **{"method.meta_lr": 0.01})
    assert learned.metrics["test"]["loss"] < 0.8 * plain.metrics["test"]["loss"]
    assert learned.metrics["test"]["acc"] > plain.metrics["test"]["acc"] + 0.02


# -- logging and errors ----------------------------------------------------------------------


def test_loss_curves_are_logged_as_line_plots(tmp_path: Path) -> None:
    _run(tmp_path, "curves", method="adalfl", **{"method.plot_every": 10, "steps": 20})
    records = [json.loads(line) for line in (tmp_path / "curves" / "metrics.jsonl").open()]
    curves = [
        (r["step"], r["method/loss_curve/digit"]) for r in records if "method/loss_curve/digit" in r
    ]
    assert [step for step, _ in curves] == [0, 10, 20]
    first = curves[0][1]
    assert len(first["x"]) == len(first["y"]) == len(first["cross-entropy"])
    # At the start (init=base) the learned loss is exactly the cross-entropy.
    torch.testing.assert_close(torch.tensor(first["y"]), torch.tensor(first["cross-entropy"]))
    assert curves[-1][1]["y"] != first["y"]
    meta = [r["method/meta_loss"] for r in records if "method/meta_loss" in r]
    # Step t's meta-update runs at step t + 1 (where its lookahead is the model): 19 of 20 steps.
    assert len(meta) == 19 and all(v == v for v in meta)


def test_decision_tasks_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(IncompatiblePairingError, match="adalfl"):
        twcore.run(["method=adalfl", "task=cubic-topk", f"run_dir={tmp_path / 'r'}"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("method.init=random", r"method.init=random must be one of base, offline"),
        ("method.meta_data=test", r"method.meta_data=test must be one of next, train, val"),
        ("method.meta_lr=-1", r"method.meta_lr=-1.0 must be >= 0"),
        ("method.hidden=[]", r"method.hidden=\[\] must not be empty"),
    ],
)
def test_bad_options_are_config_errors(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        twcore.run(["method=adalfl", "task=digits", override, f"run_dir={tmp_path / 'r'}"])


class _NoValidationTask(ReferenceTask):
    def build_spec(self) -> TaskSpec:
        return dataclasses.replace(super().build_spec(), capabilities=frozenset())

    def build_splits(self):
        splits = super().build_splits()
        del splits["val"]
        return splits


def test_meta_data_val_needs_a_validation_split() -> None:
    registry = registry_with(
        [resolve("method", "adalfl", "adalfl"), resolve("task", _NoValidationTask, "no-val")]
    )
    options = {"method": "adalfl", "task": "no-val", "model": "reference-model"}
    with pytest.raises(ConfigError, match=r"needs a task with a validation split"):
        Harness(registry, {**options, "method.meta_data": "val", "wandb.enabled": False})
    Harness(registry, {**options, "wandb.enabled": False}).steps(2)  # meta_data=train works


def test_a_non_finite_meta_loss_leaves_the_loss_network_unchanged() -> None:
    harness = plugin_harness("adalfl", task="digits")
    method = harness.components.method
    before = [p.detach().clone() for p in method.rule.loss_networks.parameters()]
    gradient = [torch.zeros_like(p) for p in method.rule.loss_networks.parameters()]
    assert not method.rule._meta_update(torch.tensor(float("nan")), gradient)
    gradient[0] = torch.full_like(gradient[0], float("inf"))
    assert not method.rule._meta_update(torch.tensor(1.0), gradient)
    for p, q in zip(before, method.rule.loss_networks.parameters(), strict=True):
        assert torch.equal(p, q)


# -- the rule in a plain loop -----------------------------------------------------------------


def _rule_for(setup, **options) -> AdaLFL:
    objectives = [LearnedObjective(o.kind, o.head, o.target) for o in setup.spec.objectives]
    return AdaLFL(objectives, **options)


@pytest.mark.parametrize("init", ["base", "offline"])
def test_a_plain_loop_with_the_rule_trains_exactly_as_the_engine(tmp_path: Path, init: str):
    """One-step-late meta-gradients with the next batch as the meta batch (the engine's
    default), φ initialised from the method's generator, the offline phase included."""
    run = {"task": "digits", "model": "mlp", "seed": 4, "batch_size": 32}
    method = {"method.init": init, "method.offline_steps": 3, "method.plot_every": 0}
    engine = engine_parameters(
        tmp_path / "engine", {"method": "adalfl", **run, **method, "steps": 8}
    )
    setup = plain_setup(run)
    rule = _rule_for(
        setup,
        init="base" if init == "base" else "network",
        one_step_late=True,
        generator=method_generator(4),
    )
    if init == "offline":  # meta-train φ on a scratch copy first, on the method's own stream
        offline = setup.task.stream("train", 32, seed=method_stream_seed(4, 1), device="cpu")
        rule.meta_train(setup.model, setup.optimizer, offline, 3)
    for batch in itertools.islice(setup.stream, 8):
        rule.step(setup.model, setup.optimizer, batch)
    assert_same_parameters(setup.model, engine)


@pytest.mark.parametrize(
    ("optimizer", "init"),
    [
        ({"optim.name": "adam"}, "base"),
        ({"optim.name": "sgd", "optim.momentum": 0.9}, "network"),
        ({"optim.name": "adamw", "optim.weight_decay": 0.1}, "base"),
    ],
)
def test_the_textbook_and_the_one_step_late_forms_train_alike(optimizer: dict, init: str):
    """The same meta batches (a separate stream), float64 (φ follows the model's dtype): the θ
    trajectories agree to rounding, with a gradient clip that bites."""
    run = {"task": "diabetes", "model": "mlp", "model.hidden": [8], "seed": 1, "batch_size": 16}
    trajectories, forms = [], []
    for late in (False, True):
        setup = plain_setup({**run, **optimizer, "optim.grad_clip": 0.5, "optim.lr": 0.01})
        setup.model.double()
        rule = _rule_for(
            setup, one_step_late=late, meta_lr=0.05, hidden=[6], grad_clip=0.5, init=init
        )

        def double(batch):
            return dataclasses.replace(batch, inputs=batch.inputs.double())

        meta = (double(b) for b in setup.task.stream("train", 16, seed=7, device="cpu"))
        for batch in itertools.islice(setup.stream, 12):
            rule.step(setup.model, setup.optimizer, double(batch), meta_batches=meta)
        assert next(rule.loss_networks.parameters()).dtype == torch.float64
        trajectories.append(torch.nn.utils.parameters_to_vector(setup.model.parameters()))
        forms.append(rule.one_step_late)
    textbook, late = trajectories
    assert forms == [False, True]  # two computations (whose bits may or may not differ: they
    # did on the machine of earlier CI runs, not on one with AVX2 and no AVX-512) ...
    torch.testing.assert_close(late, textbook, rtol=1e-9, atol=1e-12)  # ...of the same thing


def test_the_textbook_form_leaves_a_parameter_the_loss_does_not_use_alone():
    torch.manual_seed(0)
    trunk, used, unused = torch.nn.Linear(4, 6), torch.nn.Linear(6, 3), torch.nn.Linear(6, 2)
    model = torch.nn.ModuleDict({"trunk": trunk, "used": used, "unused": unused})

    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.parts = model

        def forward(self, x):
            features = torch.tanh(self.parts["trunk"](x))
            return {"used": self.parts["used"](features), "unused": self.parts["unused"](features)}

    network = TwoHeads()
    before = [p.detach().clone() for p in unused.parameters()]
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01)
    rule = AdaLFL([LearnedObjective(ObjectiveKind.CLASSIFICATION, head="used")])
    batch = Batch(inputs=torch.randn(8, 4), targets={"y": torch.randint(0, 3, (8,))})
    rule.step(network, optimizer, batch, meta_batches=itertools.repeat(batch))
    assert all(p.grad is None for p in unused.parameters())
    for old, new in zip(before, unused.parameters(), strict=True):
        assert torch.equal(old, new)


def test_the_rule_trains_a_plain_module_returning_a_tensor():
    """A user's model (nn.Sequential, one output tensor) and data (a Batch of tensors): both
    forms run, and the learned loss moves away from its start."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, 5, generator=generator)
    labels = (inputs[:, 0] > 0).long()
    for late in (False, True):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        rule = AdaLFL(
            [LearnedObjective(ObjectiveKind.CLASSIFICATION)], one_step_late=late, meta_lr=0.05
        )
        batches = [
            Batch(inputs=inputs[i : i + 16], targets={"y": labels[i : i + 16]})
            for i in range(0, 64, 16)
        ]
        phi = [p.detach().clone() for p in rule.loss_networks.parameters()]
        for _ in range(3):  # epochs
            for batch in batches:
                base, logs = rule.step(model, optimizer, batch, meta_batches=iter(batches))
                assert base.shape == (1,) and "learned_loss" in logs
        moved = any(
            not torch.equal(p, q) for p, q in zip(phi, rule.loss_networks.parameters(), strict=True)
        )
        assert moved
        accuracy = (model(inputs).argmax(dim=1) == labels).float().mean()
        assert float(accuracy) > 0.8


@pytest.mark.parametrize("late", [False, True])
def test_the_rules_state_survives_a_weights_only_checkpoint(late: bool):
    """Three steps, a checkpoint of model, optimiser and rule (the one-step-late form's
    pending meta-update included) read back with ``weights_only=True``, then three more steps
    from the original and the restored: the same parameters and loss network, exactly."""
    run = {"task": "digits", "model": "mlp", "model.hidden": [16], "seed": 3, "batch_size": 16}
    setup = plain_setup(run)
    rule = _rule_for(setup, one_step_late=late, meta_lr=0.05, hidden=[6])
    batches = list(itertools.islice(setup.stream, 7))
    meta_batches = batches[1:] + batches[:1]
    meta = iter(meta_batches)
    for batch in batches[:3]:
        rule.step(setup.model, setup.optimizer, batch, meta_batches=meta)
    saved = [setup.model.state_dict(), setup.optimizer.state_dict(), rule.state_dict()]
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    buffer.seek(0)
    model_state, optimizer_state, rule_state = torch.load(buffer, weights_only=True)
    twin = plain_setup({**run, "seed": 9})  # a different start, overwritten by the checkpoint
    twin.model.load_state_dict(model_state)
    twin.optimizer.load_state_dict(optimizer_state)
    restored = _rule_for(twin, one_step_late=late, meta_lr=0.05, hidden=[6])
    restored.load_state_dict(rule_state)
    # Each step draws a meta batch, but the one-step-late form's first (nothing is pending).
    twin_meta = iter(meta_batches[2 if late else 3 :])
    for batch in batches[3:6]:
        rule.step(setup.model, setup.optimizer, batch, meta_batches=meta)
        restored.step(twin.model, twin.optimizer, batch, meta_batches=twin_meta)
    assert_same_parameters(twin.model, setup.model.state_dict())
    assert_same_parameters(restored.loss_networks, rule.loss_networks.state_dict())
