"""TaskMet: conformance, the hypergradient against finite differences through an exactly solved
inner problem, identity metric = two-stage training, the paper's cubic top-k claim, errors."""

from __future__ import annotations

import io
import json

import pytest
import torch
from twcore_method_taskmet.metric import Metric, MetricNetwork
from twcore_method_taskmet.rule import TaskMet

import twcore
from twcore.contract.errors import ConfigError, IncompatiblePairingError
from twcore.contract.method import method_stream_seed
from twcore.orchestration.tracking.wandb_offline import read_offline_run
from twcore.testing import Harness, MethodConformance, registry_with
from twcore.testing.harness import resolve
from twcore.testing.own_loop import assert_same_parameters, engine_parameters, plain_setup

FAST = {"inner_steps_first": 6, "inner_steps": 3, "validate_every": 2, "hidden": 8}
CUBIC = {"train_size": 64, "val_size": 32, "test_size": 64}


class TestTaskMetOnDecisionTasks(MethodConformance):
    method = "taskmet"
    task = "cubic-topk"
    model = "linear"
    method_options = FAST
    task_options = CUBIC


class TestTaskMetDiagonalOnBudgetAllocation(MethodConformance):
    method = "taskmet"
    task = "budget-allocation"
    model = "mlp"
    method_options = {**FAST, "metric": "diagonal", "hypergradient": "cg"}
    task_options = {"train_size": 32, "val_size": 16, "test_size": 32}
    model_options = {"hidden": [8]}


class TestTaskMetOnMainAuxiliaryTasks(MethodConformance):
    method = "taskmet"
    task = "toy-multitask"
    method_options = FAST


def _harness(task: str = "cubic-topk", model: str = "linear", **options) -> Harness:
    registry = registry_with(
        [
            resolve("method", "taskmet", "taskmet"),
            resolve("method", "two-stage", "two-stage"),
            resolve("task", task, task),
            resolve("model", model, model),
        ]
    )
    base = {
        "method": "taskmet",
        "task": task,
        "model": model,
        "wandb.enabled": False,
        "device": "cpu",
        "batch_size": 16,
    }
    if task == "cubic-topk":
        base.update({f"task.{k}": v for k, v in CUBIC.items()})
    return Harness(registry, {**base, **options})


# -- robustness --------------------------------------------------------------------------------


def _poisoned(stream):
    """The stream's batches with every target NaN (a corrupt record, a diverged simulator)."""
    for batch in stream:
        targets = {k: torch.full_like(v, float("nan")) for k, v in batch.targets.items()}
        yield type(batch)(inputs=batch.inputs, targets=targets, context=batch.context)


def test_non_finite_losses_leave_the_predictor_and_the_metric_as_they_were():
    harness = _harness(**{f"method.{k}": v for k, v in FAST.items()})
    method = harness.components.method
    harness.steps(1)
    model_before = harness.parameters()
    metric_before = {k: v.clone() for k, v in method.metric.state_dict().items()}
    method.inner_stream = _poisoned(method.inner_stream)
    method.outer_stream = _poisoned(method.outer_stream)
    result = method.train_step(next(harness.stream))
    assert result.logs["skipped_inner_steps"] == FAST["inner_steps"]
    assert result.logs["skipped_outer_steps"] == 1
    after = harness.parameters()
    assert all(torch.equal(model_before[k], after[k]) for k in after)
    metric_after = method.metric.state_dict()
    assert all(torch.equal(metric_before[k], metric_after[k]) for k in metric_after)


# -- the metric ----------------------------------------------------------------------------------


def test_metric_forms_are_the_documented_quadratic_forms():
    generator = torch.Generator().manual_seed(0)
    residuals = torch.randn(5, 4, generator=generator, dtype=torch.float64)
    factor = torch.randn(5, 4, 4, generator=generator, dtype=torch.float64)
    shift = torch.tensor(0.7, dtype=torch.float64)
    full = Metric(4, factor=factor, shift=shift)
    matrix = factor @ factor.transpose(1, 2) + shift * torch.eye(4, dtype=torch.float64)
    expected = torch.einsum("bi,bij,bj->b", residuals, matrix, residuals) / 4
    torch.testing.assert_close(full.quadratic(residuals), expected)
    torch.testing.assert_close(full.matrix(), matrix)
    torch.testing.assert_close(full.diagonal_entries(), matrix.diagonal(dim1=1, dim2=2))
    assert torch.linalg.eigvalsh(matrix).min() >= shift - 1e-9  # positive definite


def test_diagonal_metric_keeps_its_norm_and_starts_at_the_identity():
    network = MetricNetwork(num_features=3, dim=6, kind="diagonal", hidden=5)
    features = torch.randn(4, 3)
    torch.testing.assert_close(network(features).diagonal, torch.ones(4, 6))
    with torch.no_grad():
        network.head.weight.normal_()
    diagonal = network(features).diagonal
    torch.testing.assert_close(diagonal.norm(dim=-1), torch.full((4,), 6**0.5))
    assert (diagonal > 0).all()


def test_diagonal_metric_floor_bounds_every_weight_and_mixes_linearly():
    free = MetricNetwork(num_features=3, dim=6, kind="diagonal", hidden=5)
    floored = MetricNetwork(num_features=3, dim=6, kind="diagonal", hidden=5, floor=0.2)
    floored.load_state_dict(free.state_dict())
    features = torch.randn(4, 3)
    torch.testing.assert_close(floored(features).diagonal, torch.ones(4, 6))  # still Λ = I
    with torch.no_grad():
        for network in (free, floored):
            network.head.bias.copy_(torch.tensor([30.0, 0, 0, 0, 0, -30.0]))
    weights = floored(features).diagonal
    torch.testing.assert_close(weights, 0.2 + 0.8 * free(features).diagonal)
    assert weights.min() >= 0.2 - 1e-6 and free(features).diagonal.min() < 1e-6
    with pytest.raises(ValueError, match=r"floor 1\.0 must be in"):
        MetricNetwork(num_features=3, dim=6, kind="diagonal", floor=1.0)


def test_full_metric_starts_near_the_identity():
    torch.manual_seed(0)  # the bound below holds for typical draws, not for every one
    network = MetricNetwork(num_features=3, dim=5, kind="full", hidden=7)
    matrix = network(torch.randn(2, 3)).matrix()
    torch.testing.assert_close(matrix, torch.eye(5).expand(2, 5, 5), atol=1e-3, rtol=0)


# -- the hypergradient ---------------------------------------------------------------------------


def _exact_inner_solution(method, batch) -> None:
    """Set the linear predictor (slope, intercept) to the exact minimiser of the diagonal
    metric-weighted squared error on `batch`: weighted least squares in closed form."""
    with torch.no_grad():
        weights = method.metric(method.space.features(batch)).diagonal  # [B, n]
        x, y = batch.inputs[..., 0], batch.targets["y"]
        design = torch.stack([x, torch.ones_like(x)], dim=-1).reshape(-1, 2)
        w = weights.reshape(-1)
        normal = design.T @ (w[:, None] * design)
        solution = torch.linalg.solve(normal, design.T @ (w * y.reshape(-1)))
        model = method.ctx.model
        (layer,) = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        layer.weight.copy_(solution[0].reshape(layer.weight.shape))
        layer.bias.copy_(solution[1].reshape(layer.bias.shape))


def _double_batch(batch):
    return type(batch)(
        inputs=batch.inputs.double(),
        targets={k: v.double() for k, v in batch.targets.items()},
        context={k: v.double() for k, v in batch.context.items()},
    )


@pytest.mark.parametrize("solver", ["exact", "cg", "normal_cg"])
def test_hypergradient_matches_finite_differences_through_the_exact_inner_solution(solver):
    # Inner problem: weighted least squares of a linear predictor (quadratic in θ, solved in
    # closed form). Outer: the smooth soft-top-k regret (temperature 0.5). With 2 inner
    # parameters, 4 CG iterations solve the 2×2 system exactly (8 for the normal equations).
    harness = _harness(
        **{
            "method.metric": "diagonal",
            "method.hidden": 6,
            "method.hypergradient": solver,
            "method.cg_iters": 4,
            "method.ridge": 0.0,
            "task.temperature": 0.5,
        }
    )
    method = harness.components.method
    method.ctx.model.double()
    method.metric.double()
    with torch.no_grad():
        method.metric.head.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    data = _double_batch(harness.components.task.split("train"))
    hyper, outer = data.index(slice(0, 32)), data.index(slice(32, 64))
    _exact_inner_solution(method, hyper)
    grads = _hypergradient(method, hyper, outer)
    directions = [torch.randn_like(p) for p in method.rule.metric_parameters]
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, directions, strict=True))

    def outer_loss_at(t: float) -> float:
        with torch.no_grad():
            for parameter, direction in zip(method.rule.metric_parameters, directions, strict=True):
                parameter.add_(t * direction)
        _exact_inner_solution(method, hyper)
        with torch.no_grad():
            value = float(method.space.task_loss(outer))
            for parameter, direction in zip(method.rule.metric_parameters, directions, strict=True):
                parameter.sub_(t * direction)
        return value

    step = 1e-5
    finite = (outer_loss_at(step) - outer_loss_at(-step)) / (2 * step)
    assert abs(analytic) > 1e-4
    assert analytic == pytest.approx(finite, rel=1e-4)


def test_cg_hypergradient_agrees_with_the_exact_mode_on_a_trained_predictor():
    harness = _harness(**{"method.metric": "full", "method.hidden": 6, "method.ridge": 1e-5})
    method = harness.components.method
    method._train_inner(300)
    data = harness.components.task.split("train")
    hyper, outer = data.index(slice(0, 32)), data.index(slice(32, 64))
    results = {}
    for solver in ("exact", "cg"):
        method.rule.solver, method.rule.cg_iters = solver, 10
        grads = _hypergradient(method, hyper, outer)
        results[solver] = torch.cat([g.flatten() for g in grads])
    error = (results["cg"] - results["exact"]).norm() / results["exact"].norm()
    assert float(error) < 1e-3


def _hypergradient(method, hyper, outer):
    metric = method.rule.metric_at(method.space.features(hyper), trainable=True)
    return method.rule.hypergradient(
        method.space.inner_loss(metric, hyper).mean(),
        method.space.task_loss(outer),
        list(method.ctx.model.parameters()),
    )


# -- identity metric = two-stage -----------------------------------------------------------------


def test_an_identity_metric_reproduces_two_stage_training_exactly():
    steps = 40
    taskmet = _harness(**{"method.metric": "identity", "method.inner_steps_first": steps})
    two_stage = _harness(**{"method": "two-stage", "optim.grad_clip": 1.0})
    # TaskMet's inner loop draws from the first stream its context opens; open the same one.
    batches = two_stage.components.context.stream("train")
    taskmet.step()
    for _ in range(steps):
        two_stage.components.method.train_step(next(batches))
    for name, value in taskmet.parameters().items():
        assert torch.equal(two_stage.parameters()[name], value), name


# -- what the paper claims -----------------------------------------------------------------------


def test_taskmet_escapes_the_cubic_trap_that_two_stage_falls_into(tmp_path):
    # The least-squares line has a negative slope and picks the worst item (ndq ≈ −1); a learned
    # metric that stresses the items with large |x| turns the slope positive (paper: TaskMet
    # ≥ 0.9 with a linear model).
    common = ["task=cubic-topk", "model=linear", "wandb.enabled=false", "seed=0"]
    two_stage = twcore.run(
        [*common, "method=two-stage", "steps=600", "optim.lr=0.01", f"run_dir={tmp_path / 'a'}"]
    )
    taskmet = twcore.run(
        [*common, "method=taskmet", "steps=12", "eval_every=0", f"run_dir={tmp_path / 'b'}"]
    )
    assert two_stage.metrics["test"]["ndq"] < -0.8
    assert taskmet.metrics["test"]["ndq"] > 0.9


def test_best_validation_state_is_restored_at_the_end():
    harness = _harness(
        **{
            "method.validate_every": 1,
            **{f"method.{k}": v for k, v in FAST.items() if k != "validate_every"},
        }
    )
    method = harness.components.method
    harness.steps(4)
    best = method.best_state
    assert best and method.best_loss == min(method.best_loss, method.space.validation_loss()[0])
    method.on_train_end()
    for name, value in method.ctx.model.state_dict().items():
        assert torch.equal(value, best["model"][name])


# -- logging and errors --------------------------------------------------------------------------


def test_wandb_run_holds_metric_losses_hypergradient_and_decision_quality(tmp_path):
    options = [f"method.{k}={v}" for k, v in FAST.items()] + [
        f"task.{k}={v}" for k, v in CUBIC.items()
    ]
    twcore.run(
        [
            "method=taskmet",
            "task=cubic-topk",
            "model=linear",
            "steps=4",
            "method.log_image_every=2",
            f"run_dir={tmp_path / 'run'}",
            *options,
        ]
    )
    (offline,) = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    history = read_offline_run(offline).history
    keys = set().union(*(record.keys() for record in history))
    for key in (
        "method/inner_loss",
        "method/task_loss",
        "method/hypergradient_norm",
        "method/metric_diagonal/0",
        "method/validation/ndq",
        "method/validation/mse",
        "method/metric_image",
    ):
        assert key in keys, key
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed"


def test_tasks_without_a_decision_layer_or_main_auxiliary_split_are_refused(tmp_path):
    with pytest.raises(IncompatiblePairingError, match=r"taskmet.*needs one of: a decision layer"):
        twcore.run(["method=taskmet", "task=digits", f"run_dir={tmp_path / 'run'}"])


def test_a_full_metric_over_objective_losses_is_refused_with_advice(tmp_path):
    with pytest.raises(ConfigError, match=r"use metric=diagonal"):
        _harness(task="toy-multitask", model="mlp", **{"method.metric": "full"})


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("method.metric=banana", "method.metric=banana must be one of auto, full, diagonal"),
        ("method.hypergradient=lbfgs", "method.hypergradient=lbfgs must be one of"),
        ("method.outer_lr=0", "method.outer_lr=0.0 must be > 0"),
        ("method.metric_floor=1", r"method.metric_floor=1.0 must be >= 0 and < 1"),
    ],
)
def test_invalid_options_are_one_line_config_errors(option, message, tmp_path):
    with pytest.raises(ConfigError, match=message) as error:
        twcore.run(["method=taskmet", "task=cubic-topk", option, f"run_dir={tmp_path / 'r'}"])
    assert "\n" not in str(error.value)


def test_a_plain_loop_with_the_rule_trains_exactly_as_the_engine(tmp_path):
    """Three outer steps on cubic top-k: the user's inner loop (clipped, as the adapter's),
    the rule's outer step with closures, against the engine's run."""
    run = {"task": "cubic-topk", "model": "linear", "seed": 1, "batch_size": 32}
    data = {f"task.{k}": v for k, v in CUBIC.items()}
    method = {"method.inner_steps_first": 5, "method.inner_steps": 3, "method.hidden": 8}
    quiet = {"method.validate_every": 0, "method.log_image_every": 0}
    engine = engine_parameters(
        tmp_path / "engine", {"method": "taskmet", **run, **data, **method, **quiet, "steps": 3}
    )
    setup = plain_setup({**run, **data})
    task, model, optimizer = setup.task, setup.model, setup.optimizer
    layer, head = task.decision, task.decision.head

    def stream(index: int, batch_size: int = 32):
        # The method's streams, in the order it opens them (MethodContext.stream).
        return task.stream("train", batch_size, seed=method_stream_seed(1, index), device="cpu")

    inner, hyper, outer = stream(1), stream(2), stream(4)
    sample = next(stream(3, batch_size=1))
    dim = sample.targets[head].shape[1]
    rule = TaskMet(MetricNetwork(sample.inputs.flatten(1).shape[1], dim, "full", 8, 0.01))

    def residuals(batch):
        return model(batch.inputs)[head].reshape(len(batch), dim) - batch.targets[head]

    def train_inner(steps: int) -> None:
        for _ in range(steps):
            batch = next(inner)
            loss = rule.metric_at(batch.inputs.flatten(1)).quadratic(residuals(batch)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(model.parameters()), 1.0)
            optimizer.step()

    def inner_loss():
        batch = next(hyper)
        metric = rule.metric_at(batch.inputs.flatten(1), trainable=True)
        return metric.quadratic(residuals(batch)).mean()

    def regret():
        batch = next(outer)
        predictions = model(batch.inputs)[head].reshape(len(batch), dim)
        return -layer.objective(layer.decide(predictions, batch), batch).mean()

    for steps in (5, 3, 3):
        rule.outer_step(
            train_inner=lambda steps=steps: train_inner(steps),
            inner_loss=inner_loss,
            task_loss=regret,
            predictor=list(model.parameters()),
        )
    assert_same_parameters(model, engine)


def _checkpointed(state):
    """`state` after a trip through a file read with ``weights_only=True``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_the_rules_state_survives_a_weights_only_checkpoint():
    """Two outer steps, a checkpoint of φ, its optimiser and the skip count, then one more
    outer step from the original and from a rule restored into a differently initialised
    metric: the same φ, exactly."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(32, 4, generator=generator)
    targets = torch.randn(32, 3, generator=generator)
    costs = torch.tensor([3.0, 1.0, 0.5])

    def outer_steps(rule, model, steps):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

        def train_inner():
            for _ in range(3):
                loss = rule.metric_at(inputs).quadratic(model(inputs) - targets).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

        for _ in range(steps):
            rule.outer_step(
                train_inner=train_inner,
                inner_loss=lambda: (
                    rule.metric_at(inputs, trainable=True).quadratic(model(inputs) - targets).mean()
                ),
                task_loss=lambda: ((model(inputs) - targets).square() * costs).mean(),
                predictor=list(model.parameters()),
            )

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    rule = TaskMet(MetricNetwork(4, 3, "full", hidden=8), outer_lr=0.05)
    outer_steps(rule, model, 2)
    torch.manual_seed(1)
    restored = TaskMet(MetricNetwork(4, 3, "full", hidden=8), outer_lr=0.05)
    restored.load_state_dict(_checkpointed(rule.state_dict()))
    twin = torch.nn.Linear(4, 3)
    twin.load_state_dict(model.state_dict())
    outer_steps(rule, model, 1)
    outer_steps(restored, twin, 1)
    for a, b in zip(rule.metric_parameters, restored.metric_parameters, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert restored.skipped == rule.skipped
