"""``precision=bf16`` runs every method close to float32; ``accumulate=N`` splits a step's batch
into micro-batches whose gradients add up exactly, for the methods where that holds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import twcore
from twcore.contract.errors import ConfigError

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
    common = [f"method={method}", *METHOD_TASKS[method], "steps=4", "batch_size=32"]
    full = _run(tmp_path, "fp32", *common)
    half = _run(tmp_path, "bf16", *common, "precision=bf16")
    assert half.summary["status"] == "completed"
    # bfloat16 keeps 8 bits of mantissa: a few steps from the same start agree to about 1e-2
    # in every loss (relative), the tolerance stated in the docs.
    for split, values in full.metrics.items():
        for key, value in values.items():
            if key.startswith(("loss", "avg_loss", "worst_loss", "main_loss", "mse")):
                assert half.metrics[split][key] == pytest.approx(value, rel=3e-2, abs=1e-3), key


def test_bf16_forward_passes_really_run_in_bfloat16() -> None:
    from twcore.orchestration.engine.precision import autocast

    layer = torch.nn.Linear(4, 4)
    with autocast("bf16", torch.device("cpu")):
        assert layer(torch.randn(2, 4)).dtype == torch.bfloat16
    with autocast("32", torch.device("cpu")):
        assert layer(torch.randn(2, 4)).dtype == torch.float32


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
    ("method", "answer"), [("ew", "yes"), ("alphavil", "yes"), ("gradcos", "no"), ("taskmet", "no")]
)
def test_show_says_what_a_method_can_do_before_it_is_built(
    method: str, answer: str, run_cli
) -> None:
    shown = run_cli("show", f"method={method}")
    assert shown.returncode == 0
    assert f"data-parallel (nproc > 1): yes; accumulate > 1: {answer}" in shown.stdout
