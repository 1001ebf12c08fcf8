"""αVIL: the epoch step against an independent hand computation, conformance, errors."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from twcore_method_alphavil import AlphaVIL

import twcore
from twcore.contract.errors import ConfigError, IncompatiblePairingError
from twcore.contract.method import method_stream_seed
from twcore.testing import Harness, MethodConformance, WeightingProperties, plugin_harness
from twcore.testing.own_loop import assert_same_parameters, engine_parameters, plain_setup

TOY = {"train_size": 128, "val_size": 64, "test_size": 64}


class TestAlphaVILConformance(MethodConformance):
    method = "alphavil"
    task = "toy-multitask"
    task_options = TOY
    run_options = {"batch_size": 32}
    steps = 10  # four steps an epoch: two epoch-end αVIL steps, and a resume between them


class TestAlphaVILWeightingProperties(WeightingProperties):
    def make(self, num_objectives, main):
        return AlphaVIL(num_objectives, main)


def _harness(**options) -> Harness:
    base = {
        "model.hidden": [8],
        "batch_size": 32,
        "optim.name": "sgd",
        "optim.lr": 0.1,
        "optim.momentum": 0.0,
        "method.alpha_steps": 3,
        "method.alpha_lr": 0.5,
        "method.task_lr": 0.1,
        "method.task_grad_clip": 1e9,
        **{f"task.{k}": v for k, v in TOY.items()},
    }
    return plugin_harness(
        "alphavil", task="toy-multitask", model="mlp", options={**base, **options}
    )


def test_epoch_step_matches_an_independent_computation():
    under_test, reference = _harness(), _harness()
    method = under_test.components.method
    method.steps_this_epoch = 4  # ρ = 0.25 of a 4-step epoch: one step per task copy
    method.rule.weights = torch.tensor([1.0, 0.5, 2.0, 1.0])
    logs = method.on_epoch_end(1)

    # The reference: deep copies of the model trained by SGD (task_lr 0.1), gradients by
    # ordinary backward passes of deep-copied models, on the same batches (the same streams).
    ref_method = reference.components.method
    model, task = reference.components.model, reference.components.task
    weights = torch.tensor([1.0, 0.5, 2.0, 1.0])
    shared = [n for n, _ in model.named_parameters() if n.startswith("trunk.")]
    deltas = []
    batch = next(ref_method.task_stream)  # one step per copy, all copies on the same batch
    for k in range(4):
        clone = copy.deepcopy(model)
        name = task.spec.objective_names[k]
        loss = weights[k] * task.objective_losses(clone(batch.inputs), batch)[name].mean()
        loss.backward()
        with torch.no_grad():
            for parameter in clone.parameters():
                if parameter.grad is not None:  # the other tasks' heads get no gradient
                    parameter -= 0.1 * parameter.grad
        after = dict(clone.named_parameters())
        before = dict(model.named_parameters())
        deltas.append({n: (after[n] - before[n]).detach() for n in shared})
    validation = next(ref_method.validation_stream)  # validation_batches = 2, as one batch
    assert len(validation) == 2 * under_test.composed.run.batch_size

    def moved_model(alpha):
        clone = copy.deepcopy(model)
        with torch.no_grad():
            for name, parameter in clone.named_parameters():
                if name in shared:
                    parameter += sum(alpha[k] * deltas[k][name] for k in range(4))
        return clone

    def main_loss(clone):
        return task.objective_losses(clone(validation.inputs), validation)["cls0"].mean()

    alpha = torch.ones(4)
    for _ in range(3):
        clone = moved_model(alpha)
        main_loss(clone).backward()
        grads = dict(clone.named_parameters())
        gradient = torch.tensor(
            [sum(float((grads[n].grad * deltas[k][n]).sum()) for n in shared) for k in range(4)]
        )
        alpha = alpha - 0.5 * gradient
    expected = moved_model(alpha)
    for name, parameter in under_test.components.model.named_parameters():
        reference_value = dict(expected.named_parameters())[name].detach()
        torch.testing.assert_close(parameter.detach(), reference_value)
    torch.testing.assert_close(method.rule.weights, (weights + alpha - 1).clamp_min(0))
    assert logs["alpha"]["cls0"] == pytest.approx(float(alpha[0]), rel=1e-5)
    assert logs["target_val_loss_after"] == pytest.approx(
        float(main_loss(expected).detach()), rel=1e-5
    )


def test_steps_are_weighted_multitask_steps():
    harness = _harness()
    method, model = harness.components.method, harness.components.model
    method.rule.weights = torch.tensor([1.0, 0.0, 3.0, 0.5])
    batch = next(harness.stream)
    losses = harness.components.context.objective_losses(batch)
    grads = torch.autograd.grad((method.rule.weights * losses).sum(), list(model.parameters()))
    before = [p.detach().clone() for p in model.parameters()]
    method.train_step(batch)
    for parameter, old, grad in zip(model.parameters(), before, grads, strict=True):
        torch.testing.assert_close(parameter.detach(), old - 0.1 * grad)


def test_tasks_without_a_main_auxiliary_split_are_refused(tmp_path):
    with pytest.raises(IncompatiblePairingError, match="alphavil"):
        twcore.run(["method=alphavil", "task=digits", f"run_dir={tmp_path / 'r'}"])


def test_an_out_of_range_fraction_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"method.fraction=1.5 must be > 0 and <= 1"):
        twcore.run(["method=alphavil", "method.fraction=1.5", f"run_dir={tmp_path / 'r'}"])


def test_a_diverging_task_copy_leaves_the_run_finite(tmp_path):
    # A huge copy learning rate without clipping makes the regression copy diverge; the epoch
    # step must then leave θ and the weights alone instead of writing NaN into the model.
    result = twcore.run(
        [
            "method=alphavil",
            "method.task_lr=1000",
            "method.task_grad_clip=1e30",
            "steps=70",
            "wandb.enabled=false",
            f"run_dir={tmp_path / 'r'}",
        ]
    )
    assert result.summary["status"] == "completed"


def test_the_main_job_task_runs_with_the_defaults(tmp_path):
    result = twcore.run(
        ["method=alphavil", "steps=70", "wandb.enabled=false", f"run_dir={tmp_path}/r"]
    )
    assert result.summary["status"] == "completed"


def test_a_plain_loop_with_the_rule_trains_exactly_as_the_engine(tmp_path):
    """Two epochs of a small split: weighted steps, then the rule's epoch update
    driven by plain closures, against the engine's run."""
    options = {
        "method": "alphavil",
        "task": "toy-multitask",
        "task.train_size": 96,
        "batch_size": 32,
        "optim.name": "sgd",
        "optim.lr": 0.1,
        "seed": 2,
    }
    engine = engine_parameters(tmp_path / "engine", {**options, "steps": 6})
    setup = plain_setup({k: v for k, v in options.items() if k != "method"})
    model, task = setup.model, setup.task
    rule = AlphaVIL(task.spec.num_objectives, main=task.spec.main_index)
    # The engine's method draws its copies' batches and the α fit's validation batch from
    # streams of its own: the method's first and second (MethodContext.stream).
    batches = task.stream("train", 32, seed=method_stream_seed(2, 1), device="cpu")
    dev = task.stream("val", 64, seed=method_stream_seed(2, 2), device="cpu")
    shared = [n for n, _ in model.named_parameters() if n.startswith("trunk.")]
    names = task.spec.objective_names

    def loss_at(params, batch, index):
        outputs = torch.func.functional_call(model, params, (batch.inputs,))
        return task.objective_losses(outputs, batch)[names[index]].mean()

    epoch_steps = 0
    for _ in range(6):
        batch = next(setup.stream)
        losses = setup.losses(batch)
        setup.optimizer.zero_grad(set_to_none=True)
        rule.backward(losses)
        setup.optimizer.step()
        epoch_steps += 1
        if epoch_steps == 3:  # 96 examples in batches of 32: an epoch is 3 steps
            rule.epoch_update(
                model,
                shared,
                batches=batches,
                task_loss=loss_at,
                dev_batch=next(dev),
                steps=rule.copy_steps(epoch_steps),
            )
            epoch_steps = 0
    assert_same_parameters(model, engine)


def _epoch_update_problem(seed: int = 0):
    """A trunk shared by three linear heads, its three regression tasks, and a plain-closure
    task loss, for epoch updates driven by hand."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)
    ).double()
    inputs, targets = torch.randn(64, 4).double(), torch.randn(64, 3).double()

    def loss_at(params, batch, index):
        x, y = batch
        outputs = torch.func.functional_call(model, params, (x,))
        return (outputs[:, index] - y[:, index]).square().mean()

    def stream(offset):
        return ((inputs[i : i + 16], targets[i : i + 16]) for i in itertools.cycle([offset]))

    return model, loss_at, stream, (inputs[48:], targets[48:])


def test_one_iterator_per_task_equals_the_shared_iterator_when_they_agree():
    model, loss_at, stream, dev = _epoch_update_problem()
    twin, loss_at_twin, _, _ = _epoch_update_problem()
    shared_rule, per_task_rule = AlphaVIL(3, main=0), AlphaVIL(3, main=0)
    shared = ["0.weight", "0.bias"]
    one = shared_rule.epoch_update(
        model, shared, batches=stream(0), task_loss=loss_at, dev_batch=dev, steps=2
    )
    three = per_task_rule.epoch_update(
        twin, shared, batches=[stream(0)] * 3, task_loss=loss_at_twin, dev_batch=dev, steps=2
    )
    assert one == three
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_each_task_copy_trains_on_its_own_iterator():
    """Copy i's change, from its own batches, against an explicit SGD run of task i alone."""
    model, loss_at, stream, dev = _epoch_update_problem()
    rule = AlphaVIL(3, main=0, alpha_steps=1, alpha_lr=1e-12, task_grad_clip=1e9)
    shared = ["0.weight", "0.bias"]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rule.epoch_update(
        model,
        shared,
        batches=[stream(0), stream(16), stream(32)],
        task_loss=loss_at,
        dev_batch=dev,
        steps=2,
    )
    # α stays at one (a vanishing α step): θ moves by Σ_i δ_i on the shared parameters.
    expected = {n: torch.zeros_like(before[n]) for n in shared}
    for task, offset in enumerate([0, 16, 32]):
        params = {n: v.clone().requires_grad_() for n, v in before.items()}
        for batch in itertools.islice(stream(offset), 2):
            gradients = torch.autograd.grad(loss_at(params, batch, task), list(params.values()))
            with torch.no_grad():
                for value, gradient in zip(params.values(), gradients, strict=True):
                    value -= rule.task_lr * gradient
        for n in shared:
            expected[n] += params[n].detach() - before[n]
    for n, parameter in model.named_parameters():
        change = parameter.detach() - before[n]
        if n in shared:
            torch.testing.assert_close(change, expected[n], rtol=1e-6, atol=1e-9)
        else:
            assert bool((change == 0).all()), n


def test_a_validation_loss_closure_equals_the_validation_batch():
    model, loss_at, stream, dev = _epoch_update_problem()
    twin, loss_at_twin, _, _ = _epoch_update_problem()
    shared = ["0.weight", "0.bias"]
    by_batch = AlphaVIL(3, main=0).epoch_update(
        model, shared, batches=stream(0), task_loss=loss_at, dev_batch=dev, steps=2
    )
    by_closure = AlphaVIL(3, main=0).epoch_update(
        twin,
        shared,
        batches=stream(0),
        task_loss=loss_at_twin,
        dev_loss=lambda params: loss_at_twin(params, dev, 0),
        steps=2,
    )
    assert by_batch == by_closure


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "exactly one of dev_batch and dev_loss"),
        ({"dev_batch": 0, "dev_loss": lambda params: 0}, "exactly one of dev_batch and dev_loss"),
        ({"dev_batch": 0, "batches": [iter([])] * 2}, "holds 2 iterators; one per task needs 3"),
    ],
)
def test_epoch_update_arguments_are_checked(arguments, message):
    model, loss_at, stream, _ = _epoch_update_problem()
    call = {"batches": stream(0), "task_loss": loss_at, "steps": 1, **arguments}
    with pytest.raises(ValueError, match=message):
        AlphaVIL(3, main=0).epoch_update(model, ["0.weight"], **call)
