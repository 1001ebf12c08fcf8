"""GradCos: the hand-computed update, the paper's 2-D toy claim, conformance, errors."""

from __future__ import annotations

import contextlib
import itertools
import warnings

import pytest
import torch
from twcore_method_gradcos.rule import GradCos, combine_shared_gradients

import twcore
from twcore.autodiff import GramRecorder
from twcore.contract import weighting
from twcore.contract.errors import ConfigError, IncompatiblePairingError
from twcore.testing import Harness, MethodConformance, WeightingProperties, plugin_harness
from twcore.testing.own_loop import assert_same_parameters, engine_parameters, plain_setup

TOY = {"train_size": 200, "val_size": 100, "test_size": 100}


class TestWeightedGradCosConformance(MethodConformance):
    method = "gradcos"
    task = "toy-multitask"
    task_options = TOY


class TestUnweightedGradCosConformance(MethodConformance):
    method = "gradcos"
    task = "toy-multitask"
    task_options = TOY
    method_options = {"variant": "unweighted"}


def _harness(**options) -> Harness:
    base = {
        "model.hidden": [8],
        "optim.name": "sgd",
        "optim.lr": 0.1,
        "optim.momentum": 0.0,
        **{f"task.{k}": v for k, v in TOY.items()},
    }
    return plugin_harness("gradcos", task="toy-multitask", model="mlp", options={**base, **options})


@pytest.mark.parametrize("variant", ["weighted", "unweighted"])
def test_one_step_matches_a_hand_computed_update(variant):
    harness = _harness(**{"method.variant": variant})
    model, context = harness.components.model, harness.components.context
    spec = harness.components.task.spec
    batch = next(harness.stream)
    losses = context.objective_losses(batch)
    trunk = list(model.shared_parameters())
    # Each objective's gradient by its own backward pass (independent of the batched path).
    per_objective = [
        torch.autograd.grad(
            losses[k], list(model.parameters()), retain_graph=True, allow_unused=True
        )
        for k in range(len(losses))
    ]
    names = [n for n, _ in model.named_parameters()]
    main = spec.main_index

    def flat(k):
        pairs = zip(per_objective[k], names, strict=True)
        return torch.cat([g.flatten() for g, n in pairs if n.startswith("trunk.")])

    expected = {}
    main_flat = flat(main)
    combined = main_flat.clone()
    for k in range(len(losses)):
        if k == main:
            continue
        cosine = torch.dot(main_flat, flat(k)) / (main_flat.norm() * flat(k).norm())
        weight = max(0.0, float(cosine)) if variant == "weighted" else float(cosine > 0)
        combined += weight * flat(k)
    offset = 0
    for name, parameter in model.named_parameters():
        if name.startswith("trunk."):
            grad = combined[offset : offset + parameter.numel()].view_as(parameter)
            offset += parameter.numel()
        else:  # a head: only its own objective reaches it
            grad = sum(
                g[names.index(name)] for g in per_objective if g[names.index(name)] is not None
            )
        expected[name] = parameter.detach() - 0.1 * grad
    assert offset == sum(p.numel() for p in trunk)
    harness.components.method.train_step(batch)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.detach(), expected[name], rtol=1e-4, atol=1e-6)


def _train_toy(variant: str | None, start: torch.Tensor, steps: int = 3000) -> torch.Tensor:
    """Gradient descent on θ ∈ R² with main loss ‖θ − a‖² and auxiliary ‖θ − b‖²·(1 + θ₂²):
    their gradients conflict near the main minimum a. `variant=None` is the plain sum."""
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.5])
    theta = start.clone().requires_grad_()
    for _ in range(steps):
        main = (theta - a).square().sum()
        auxiliary = (theta - b).square().sum() * (1 + theta[1] ** 2)
        rows = torch.stack([torch.autograd.grad(loss, theta)[0] for loss in (main, auxiliary)])
        if variant is None:
            direction = rows.sum(0)
        else:
            direction, _, _ = combine_shared_gradients(rows, 0, variant)
        with torch.no_grad():
            theta -= 0.01 * direction
    return theta.detach()


def test_gradcos_converges_to_the_main_minimum_where_the_plain_sum_does_not():
    # Brute force: the main loss's minimiser on a fine grid.
    grid = torch.stack(
        torch.meshgrid(torch.linspace(-2, 2, 401), torch.linspace(-2, 2, 401), indexing="ij"), -1
    ).reshape(-1, 2)
    main_minimum = grid[(grid - torch.tensor([1.0, 0.0])).square().sum(-1).argmin()]
    for start in ([0.0, 1.5], [-1.5, -1.0], [2.0, 2.0]):
        start = torch.tensor(start)
        for variant in ("weighted", "unweighted"):
            end = _train_toy(variant, start)
            assert torch.allclose(end, main_minimum, atol=0.02), (variant, start, end)
        plain = _train_toy(None, start)
        assert (plain - main_minimum).norm() > 0.5


def test_cosines_and_weights_are_logged_per_auxiliary():
    result = _harness().step()
    auxiliaries = {"cls1", "cls2", "reg0"}
    assert set(result.logs["cosine"]) == auxiliaries
    weights = dict(zip(("cls0", "cls1", "cls2", "reg0"), result.weights.tolist(), strict=True))
    assert weights["cls0"] == 1.0
    for name in auxiliaries:
        assert weights[name] == pytest.approx(max(0.0, float(result.logs["cosine"][name])))


def test_tasks_without_a_main_auxiliary_split_are_refused(tmp_path):
    with pytest.raises(IncompatiblePairingError, match="gradcos"):
        twcore.run(["method=gradcos", "task=digits", f"run_dir={tmp_path / 'r'}"])


def test_an_unknown_variant_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"method.variant=both must be one of weighted"):
        twcore.run(["method=gradcos", "method.variant=both", f"run_dir={tmp_path / 'r'}"])


class TestGradCosProperties(WeightingProperties):
    def make(self, num_objectives, main):
        return GradCos(num_objectives, main=main)


class TestUnweightedGradCosProperties(WeightingProperties):
    def make(self, num_objectives, main):
        return GradCos(num_objectives, main=main, variant="unweighted")


@pytest.mark.parametrize(
    ("variant", "gradients"), [("weighted", "gram"), ("unweighted", "gram"), ("weighted", "rows")]
)
def test_a_plain_loop_with_the_rule_trains_exactly_as_the_engine(tmp_path, variant, gradients):
    options = {"method": "gradcos", "method.variant": variant, "steps": 15, "seed": 3}
    engine = engine_parameters(tmp_path / "engine", {**options, "method.gradients": gradients})
    setup = plain_setup({"seed": 3})
    rule = GradCos(setup.spec.num_objectives, main=setup.spec.main_index, variant=variant)
    model = setup.model
    trunk = list(model.trunk.parameters())
    recorder = GramRecorder(trunk, model, cut=model.trunk) if gradients == "gram" else None
    for batch in itertools.islice(setup.stream, 15):
        with recorder or contextlib.nullcontext():
            losses = setup.losses(batch)
        setup.optimizer.zero_grad(set_to_none=True)
        rule.backward(losses, trunk, params=model.parameters(), gram=recorder)
        setup.optimizer.step()
    assert_same_parameters(model, engine)


def _no_pass_through_the_heads(*args, **kwargs):
    raise AssertionError("a backward pass through the heads ran")


@pytest.mark.parametrize("cut", [False, True])
@pytest.mark.parametrize("variant", ["weighted", "unweighted"])
def test_the_gram_path_is_the_rows_path_in_float64(variant, cut, monkeypatch):
    """Cosines from the recorded Gram matrix and one weighted backward give the gradients,
    weights and logs of the K gradient rows, to 1e-10 (a trunk with a shared head too, and a
    shared parameter no loss reaches: zeros on both paths). With the trunk as the cut, the
    losses reach its output in one pass through the heads, which gives the heads' gradients
    too (no backward pass of their own)."""
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(
        torch.nn.Conv1d(2, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(24, 6)
    ).double()
    trunk.register_parameter("unused", torch.nn.Parameter(torch.ones(3, dtype=torch.float64)))
    heads = torch.nn.ModuleList(torch.nn.Linear(6, 1) for _ in range(3)).double()
    x, y = torch.randn(16, 2, 8, dtype=torch.float64), torch.randn(16, 3, dtype=torch.float64)
    params = [*trunk.parameters(), *heads.parameters()]
    results = []
    for use_gram in (False, True):
        recorder = (
            GramRecorder(list(trunk.parameters()), [trunk, heads], cut=trunk)
            if cut
            else GramRecorder(list(trunk.parameters()), trunk)
        )
        with recorder if use_gram else contextlib.nullcontext():
            features = trunk(x)
            outs = [head(features).squeeze(-1) for head in heads]
            again = heads[0](features).squeeze(-1)  # the shared head, called again
            losses = torch.stack(
                [((o - y[:, i]) ** 2).mean() for i, o in enumerate(outs)] + [again.abs().mean()]
            )
        for p in params:
            p.grad = None
        if use_gram and cut:  # the heads' gradients come from the recorder's pass
            monkeypatch.setattr(weighting, "_own_backward", _no_pass_through_the_heads)
        step = GradCos(4, main=0, variant=variant).backward(
            losses, list(trunk.parameters()), params=params, gram=recorder if use_gram else None
        )
        results.append((step, [p.grad.clone() for p in params]))
    assert recorder.used_readers == cut
    (rows_step, rows_grads), (gram_step, gram_grads) = results
    torch.testing.assert_close(gram_step.weights, rows_step.weights, rtol=1e-10, atol=1e-12)
    for key in (1, 2, 3):
        torch.testing.assert_close(
            gram_step.logs["cosine"][key], rows_step.logs["cosine"][key], rtol=1e-10, atol=1e-12
        )
    torch.testing.assert_close(
        gram_step.logs["shared_grad_norm"], rows_step.logs["shared_grad_norm"], rtol=1e-10, atol=0
    )
    for gram_grad, rows_grad in zip(gram_grads, rows_grads, strict=True):
        torch.testing.assert_close(gram_grad, rows_grad, rtol=1e-10, atol=1e-12)
    assert torch.equal(gram_grads[0], torch.zeros(3, dtype=torch.float64))  # trunk.unused


def test_without_params_or_shared_the_rule_finds_them_from_the_graph(tmp_path):
    setup = plain_setup({"seed": 5})
    batch = next(setup.stream)
    rule = GradCos(setup.spec.num_objectives, main=setup.spec.main_index)
    rule.backward(setup.losses(batch), setup.shared, params=setup.model.parameters())
    given = {n: p.grad.clone() for n, p in setup.model.named_parameters()}
    setup.model.zero_grad(set_to_none=True)
    rule.backward(setup.losses(batch), setup.shared)  # every other parameter found in the graph
    for name, parameter in setup.model.named_parameters():
        assert torch.equal(parameter.grad, given[name]), name
    setup.model.zero_grad(set_to_none=True)
    rule.backward(setup.losses(batch))  # the shared ones too: what two or more losses reach
    for name, parameter in setup.model.named_parameters():
        # The same gradient; the parameters come in the graph's order, so sums run in another.
        torch.testing.assert_close(parameter.grad, given[name], rtol=1e-5, atol=1e-7)


def test_the_engine_checks_the_recorded_gram_once_and_falls_back_to_the_rows_if_it_differs():
    """A model whose layers a recorder cannot see correctly (here: a recorder made to err)
    trains on the gradient rows after one warning; a right recorder is checked once."""
    options = {"seed": 4, "method.gradients": "gram"}
    right = plugin_harness("gradcos", task="toy-multitask", model="mlp", options=options)
    rows_options = {**options, "method.gradients": "rows"}
    rows = plugin_harness("gradcos", task="toy-multitask", model="mlp", options=rows_options)
    wrong = plugin_harness("gradcos", task="toy-multitask", model="mlp", options=options)
    recorder = wrong.components.method.recorder
    recorder.gram = lambda losses, retain_graph=True: torch.eye(len(losses))
    with pytest.warns(UserWarning, match="differs from the gradient rows"):
        wrong.step()
    assert wrong.components.method.recorder is None
    right.steps(3)
    assert right.components.method.recorder is not None  # checked on the first step, kept
    rows.step()
    wrong.steps(2)
    rows.steps(2)
    for name, value in rows.parameters().items():
        torch.testing.assert_close(wrong.parameters()[name], value, rtol=0, atol=0)


def test_a_recorder_whose_heads_gradient_is_wrong_falls_back_to_the_rows():
    """The heads' gradients come from the recorder's pass through them too: the first step
    checks them against the rows' (here a recorder made to double them)."""
    options = {"seed": 4, "method.gradients": "gram"}
    wrong = plugin_harness("gradcos", task="toy-multitask", model="mlp", options=options)
    recorder = wrong.components.method.recorder
    complete = recorder.own_gradients

    def doubled(tensors, coefficients=None):
        grads = complete(tensors, coefficients)
        assert grads is not None
        return [2 * grad for grad in grads]

    recorder.own_gradients = doubled
    with pytest.warns(UserWarning, match="heads' gradient .* differs from the gradient rows"):
        wrong.step()
    assert wrong.components.method.recorder is None


def test_a_recorder_whose_weighted_gradient_is_wrong_falls_back_to_the_rows():
    """The step's gradient on the trunk comes from the recorder too: the first step checks it
    against the rows' (here a recorder made to drop the first layer's bias) as it checks the
    Gram matrix."""
    options = {"seed": 4, "method.gradients": "gram"}
    wrong = plugin_harness("gradcos", task="toy-multitask", model="mlp", options=options)
    recorder = wrong.components.method.recorder
    complete = recorder.weighted_gradients

    def without_a_bias(weights):
        grads = complete(weights)
        assert grads is not None and grads[1].dim() == 1  # the first layer's bias
        grads[1] = torch.zeros_like(grads[1])
        return grads

    recorder.weighted_gradients = without_a_bias
    with pytest.warns(UserWarning, match="weighted gradient .* differs from the gradient rows"):
        wrong.step()
    assert wrong.components.method.recorder is None


NARROW_TRUNK = {
    "batch_size": 12,
    "model.hidden": [32],
    "task.num_classification": 1,
    "task.num_classes": 2,
    "task.num_regression": 1,
}
"""Two objectives on a 16-32 trunk and a batch of 12: the one dense layer's K gradients cost
fewer multiply-adds than its rows' kernel and the weighted gradient from it."""


@pytest.mark.parametrize(
    ("options", "path"), [({"batch_size": 16}, "gram"), (NARROW_TRUNK, "rows")]
)
def test_the_default_path_is_the_cheaper_by_the_first_steps_shapes_and_trains_as_that_path(
    options, path
):
    """``gradients=auto`` decides on the first step by the estimated multiply-adds of the
    recorded shapes (`GramRecorder.path_costs`, checked against torch's FLOP count in
    tests/test_layer_gram.py) and then trains exactly as that path chosen by hand."""
    options = {"seed": 2, **options}
    auto = plugin_harness("gradcos", task="toy-multitask", model="mlp", options=options)
    assert auto.components.method.gradient_path is None  # not chosen before a step
    chosen = plugin_harness(
        "gradcos", task="toy-multitask", model="mlp", options={**options, "method.gradients": path}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # chosen, not fallen back to after a failed check
        auto.steps(3)
    chosen.steps(3)
    assert auto.components.method.gradient_path == path
    assert chosen.components.method.gradient_path == path
    if path == "gram":  # the engine's losses split at the trunk's output
        assert chosen.components.method.recorder.used_cut
        # the heads' shapes are noted for the choice only
        assert not auto.components.method.recorder.tally_others
    for name, value in chosen.parameters().items():
        torch.testing.assert_close(auto.parameters()[name], value, rtol=0, atol=0)
