"""``precision=bf16`` runs every method close to float32; ``precision=16-mixed`` (float16 with
a dynamic loss scale) runs the methods whose gradients go only into the optimiser's step, and
refuses the others; ``accumulate=N`` splits a step's batch into micro-batches whose gradients
add up exactly, for the methods where that holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import twcore
from twcore.contract.errors import ConfigError
from twcore.contract.loss_scale import DynamicLossScale
from twcore.orchestration.engine.precision import autocast
from twcore.testing import Harness, plugin_harness

SMALL_TASK = [
    "task=toy-multitask",
    "task.train_size=200",
    "task.val_size=100",
    "task.test_size=100",
]
METHOD_TASKS = {
    "ew": SMALL_TASK,
    "gradcos": SMALL_TASK,
    "ldro": SMALL_TASK,
    "group-dro": SMALL_TASK,
    "alphavil": SMALL_TASK,
    "adalfl": SMALL_TASK,
    "taskmet": ["task=cubic-topk", "method.inner_steps_first=50", "method.inner_steps=20"],
    "dfl": ["task=cubic-topk"],
    "two-stage": ["task=cubic-topk"],
}


def _run(tmp_path: Path, name: str, *overrides: str) -> twcore.RunResult:
    return twcore.run(
        [*overrides, f"run_dir={tmp_path / name}", "wandb.enabled=false", "eval_every=0"]
    )


@pytest.mark.parametrize("method", list(METHOD_TASKS))
def test_bf16_autocast_stays_close_to_float32(method: str, tmp_path: Path) -> None:
    full, half = _float32_and("bf16", [f"method={method}", *METHOD_TASKS[method]], 32, tmp_path)
    # bfloat16 keeps 8 bits of mantissa: a few steps from the same start agree to about 1e-2
    # in every loss (relative), the tolerance stated in the docs.
    _assert_losses_close(half, full, rel=3e-2, abs=1e-3)


def _float32_and(
    precision: str, overrides: list[str], batch_size: int, tmp_path: Path
) -> tuple[twcore.RunResult, twcore.RunResult]:
    """Four steps of the same run in float32 and in `precision` (which completes)."""
    common = [*overrides, "steps=4", f"batch_size={batch_size}"]
    full = _run(tmp_path, "fp32", *common)
    half = _run(tmp_path, precision, *common, f"precision={precision}")
    assert half.summary["status"] == "completed"
    return full, half


def _assert_losses_close(
    half: twcore.RunResult, full: twcore.RunResult, **tolerance: float
) -> None:
    """Every loss metric of `half` is within `tolerance` (pytest.approx's) of `full`'s."""
    losses = [
        (split, key)
        for split, values in full.metrics.items()
        for key in values
        if key.startswith(("loss", "avg_loss", "worst_loss", "main_loss", "mse"))
    ]
    assert losses
    for split, key in losses:
        expected = full.metrics[split][key]
        assert half.metrics[split][key] == pytest.approx(expected, **tolerance), key


def test_bf16_forward_passes_really_run_in_bfloat16() -> None:
    layer = torch.nn.Linear(4, 4)
    with autocast("bf16", torch.device("cpu")):
        assert layer(torch.randn(2, 4)).dtype == torch.bfloat16
    with autocast("32", torch.device("cpu")):
        assert layer(torch.randn(2, 4)).dtype == torch.float32


# Plain SGD with a large step: a gradient scaled once too often (or unscaled twice) would move
# the model 2¹⁶ times too far (or too little), which Adam's normalised step would hide.
SGD = ["optim.name=sgd", "optim.lr=0.1", "optim.momentum=0"]
FP16_METHOD_TASKS = {
    "ew": [*SMALL_TASK, *SGD],
    "group-dro": [*SMALL_TASK, *SGD],
    "uw": [*SMALL_TASK, *SGD],
    "dwa": [*SMALL_TASK, *SGD],
    "rlw": [*SMALL_TASK, *SGD],
    "two-stage": ["task=cubic-topk", *SGD],
}


@pytest.mark.parametrize("method", list(FP16_METHOD_TASKS))
def test_fp16_mixed_stays_close_to_float32(method: str, tmp_path: Path) -> None:
    # Batches of 128 keep the scaled float16 gradients in range from the first step (with 32,
    # uncertainty weighting's first steps overflow at the initial scale 2¹⁶ and are skipped,
    # as torch's GradScaler skips them), so both runs take the same 4 steps.
    overrides = [f"method={method}", *FP16_METHOD_TASKS[method]]
    full, half = _float32_and("16-mixed", overrides, 128, tmp_path)
    lines = (half.run_dir / "metrics.jsonl").read_text().splitlines()
    steps = [record for record in map(json.loads, lines) if "train/loss_scale" in record]
    assert len(steps) == 4 and all(r["train/skipped_steps"] == 0 for r in steps)
    assert all(r["train/loss_scale"] == 2.0**16 for r in steps)
    # float16 keeps 11 bits of mantissa: a few steps from the same start agree to about 1e-3
    # in every loss (relative), the tolerance stated in the docs.
    _assert_losses_close(half, full, rel=2e-3, abs=1e-4)


def test_the_scale_keeps_a_small_gradient_that_float16_would_lose() -> None:
    """A loss whose gradient at the float16 outputs is below float16's smallest number: with
    the scale the weight's gradient is float32's to float16 rounding; without, it is lost."""
    generator = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(8, 4)
    inputs = torch.randn(64, 8, generator=generator)
    targets = torch.randn(64, 4, generator=generator)

    def gradient(precision: str, scale: DynamicLossScale | None) -> torch.Tensor:
        layer.zero_grad(set_to_none=True)
        with autocast(precision, torch.device("cpu")):
            outputs = layer(inputs)
            outputs = scale.scale_gradients(outputs) if scale is not None else outputs
            loss = 1e-6 * torch.nn.functional.mse_loss(outputs.float(), targets)
        loss.backward()
        if scale is not None:
            assert scale.unscale(layer.parameters())
        assert layer.weight.grad is not None
        return layer.weight.grad.clone()

    exact = gradient("32", None)
    scaled = gradient("16-mixed", DynamicLossScale())
    unscaled = gradient("16-mixed", None)
    error = float((scaled - exact).norm() / exact.norm())
    assert error < 1e-2
    assert float((unscaled - exact).norm() / exact.norm()) > 0.5  # float16 lost it


@pytest.mark.parametrize(
    "method", ["gradcos", "ldro", "alphavil", "adalfl", "taskmet", "dfl", "famo"]
)
def test_methods_that_compute_with_gradients_refuse_fp16(method: str, tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=f"precision=16-mixed: method '{method}' computes with gradients"
    ):
        _run(tmp_path, "run", f"method={method}", *METHOD_TASKS.get(method, SMALL_TASK),
             "steps=1", "precision=16-mixed")  # fmt: skip
    assert not (tmp_path / "run" / "summary.json").exists()  # refused before anything ran


def _scaled_harness(**options: object) -> Harness:
    return plugin_harness(
        "ew",
        task="toy-multitask",
        options={"precision": "16-mixed", "task.train_size": 64, **options},
    )


def test_the_loss_scale_leaves_the_losses_and_the_unscaled_gradients_as_they_were() -> None:
    """A power-of-two scale at the model's outputs changes no loss and, once unscaled, no bit
    of any gradient (float32, no autocast): the same step as a run without a scale."""
    scaled, plain = _scaled_harness(), plugin_harness("ew", task="toy-multitask",
                                                      options={"task.train_size": 64})  # fmt: skip
    batch = next(scaled.stream)
    gradients = []
    for harness in (scaled, plain):
        context = harness.components.context
        losses = context.objective_losses(batch)
        context.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        if context.loss_scale is not None:
            raw = [p.grad.clone() for p in context.model.parameters()]
            assert context.loss_scale.unscale(context.model.parameters())
            for before, p in zip(raw, context.model.parameters(), strict=True):
                assert torch.equal(before, p.grad * 2.0**16)  # it was scaled, exactly
        gradients.append((losses.detach(), [p.grad for p in context.model.parameters()]))
    (scaled_losses, scaled_grads), (plain_losses, plain_grads) = gradients
    assert torch.equal(scaled_losses, plain_losses)
    assert all(torch.equal(a, b) for a, b in zip(scaled_grads, plain_grads, strict=True))


def test_a_step_with_overflowing_gradients_is_skipped_and_the_scale_backs_off() -> None:
    harness = _scaled_harness()
    context = harness.components.context
    assert context.loss_scale is not None
    context.loss_scale.scale = 1e300  # overflows float32 gradients: inf and nan
    before = [p.detach().clone() for p in context.model.parameters()]
    harness.steps(1)
    assert all(torch.equal(a, p) for a, p in zip(before, context.model.parameters(), strict=True))
    assert context.loss_scale.scale == 0.5e300 and context.loss_scale.skipped_steps == 1
    assert all(p.grad is None for p in context.model.parameters())  # cleared, not stepped on
    context.loss_scale.scale = 2.0**10
    harness.steps(1)  # a finite step moves the model again
    assert not all(
        torch.equal(a, p) for a, p in zip(before, context.model.parameters(), strict=True)
    )
    assert context.loss_scale.skipped_steps == 1
    state = context.state_dict()["loss_scale"]
    assert state == {"scale": 2.0**10, "finite_steps": 1, "skipped_steps": 1}
    other = _scaled_harness()
    other.components.context.load_state_dict(context.state_dict())
    assert other.components.context.loss_scale.state_dict() == state


def test_the_scale_grows_after_a_run_of_finite_steps_and_refuses_bad_settings() -> None:
    scale = DynamicLossScale(init_scale=8.0, growth_interval=2)
    weight = torch.nn.Parameter(torch.ones(3))
    for expected in (8.0, 16.0, 16.0, 32.0):
        weight.grad = torch.ones(3) * scale.scale
        assert scale.unscale([weight])
        assert torch.equal(weight.grad, torch.ones(3))
        assert scale.scale == expected
    weight.grad = torch.tensor([1.0, float("nan"), 1.0])
    assert not scale.unscale([weight]) and scale.scale == 16.0 and scale.finite_steps == 0
    with pytest.raises(ValueError, match="backoff=2 in \\(0, 1\\)"):
        DynamicLossScale(backoff=2)


@pytest.mark.parametrize("method", ["ew", "alphavil"])
def test_accumulating_micro_batches_equals_the_whole_batch(method: str, tmp_path: Path) -> None:
    # Eight steps cross an epoch end, so αVIL's between-epoch α fit runs in both.
    common = [f"method={method}", *SMALL_TASK, "steps=8", "batch_size=33"]
    whole = _run(tmp_path, "whole", *common)
    parts = _run(tmp_path, "parts", *common, "accumulate=3")  # 11 + 11 + 11
    one = torch.load(tmp_path / "whole/checkpoints/last.pt", weights_only=True)["model"]
    two = torch.load(tmp_path / "parts/checkpoints/last.pt", weights_only=True)["model"]
    for name in one:
        assert torch.allclose(one[name], two[name], atol=1e-6, rtol=0), name
    assert parts.metrics["test"]["avg_loss"] == pytest.approx(
        whole.metrics["test"]["avg_loss"], abs=1e-5
    )


@pytest.mark.parametrize("method", ["gradcos", "ldro", "group-dro", "adalfl"])
def test_methods_whose_step_is_nonlinear_refuse_accumulation(method: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"accumulate=2: method '{method}' does not accumulate"):
        _run(tmp_path, "run", f"method={method}", *SMALL_TASK, "steps=1", "accumulate=2")


@pytest.mark.parametrize(
    ("method", "answer", "fp16"),
    [("ew", "yes", "yes"), ("alphavil", "yes", "no"), ("gradcos", "no", "no"),
     ("taskmet", "no", "no"), ("uw", "no", "yes")],
)  # fmt: skip
def test_show_says_what_a_method_can_do_before_it_is_built(
    method: str, answer: str, fp16: str, run_cli
) -> None:
    shown = run_cli("show", f"method={method}")
    assert shown.returncode == 0
    assert (
        f"data-parallel (nproc > 1): yes; accumulate > 1: {answer}; precision=16-mixed: {fp16}"
        in shown.stdout
    )
