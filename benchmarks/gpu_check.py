"""The GPU path, exercised: every method on every task it can run on, a data-parallel run on
the available GPUs, and the decision solvers on the GPU against the CPU — one markdown table.

    python3 benchmarks/gpu_check.py [--device cuda] [--steps 3] [--out FILE]
                                    [--methods ew,gradcos] [--tasks toy-multitask]

Each method × task pair is a real ``twcore run`` of ``--steps`` steps (TaskMet-style outer
loops with a few inner steps) on ``--device``; a pair that fails is a row saying how, and the
others go on. The data-parallel check trains ``ew`` and ``gradcos`` with ``nproc`` = the number
of GPUs (NCCL; it needs two) and compares the final metrics with a single-GPU run. The solver
check times forward + backward of each decision task's batched solver on the test split, on
the CPU and on ``--device``. ``--device cpu`` runs the same checks without a GPU (the test suite
does, on a small selection), so the script itself never rots. The precision check runs
``ew``, ``uw`` and ``gradcos`` in bf16 and in float16 with its loss scale (``16-mixed``,
which GradCos refuses) against float32.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import twcore
from twcore.contract.errors import ConfigError, IncompatiblePairingError, first_line
from twcore.contract.pairing import check_compatible
from twcore.orchestration.config.compose import compose
from twcore.orchestration.engine.components import build_task
from twcore.orchestration.registry import get_registry

# Small versions of the heavier tasks and outer-loop methods, so a pair takes seconds.
TASK_OPTIONS = {
    "atari-aux": ["task.frames=2000"],
    "cartpole-distractors": [],
    "gridworld-aux": [],
    "mnist": ["task.train_size=512"],
    "mnist-aux": ["task.train_size=512"],
    "mnist-multitask": ["task.train_size=512"],
    "multimnist": ["task.train_size=512"],
    "toy-multitask": ["task.train_size=512"],
}
METHOD_OPTIONS = {
    "taskmet": ["method.inner_steps_first=5", "method.inner_steps=5"],
}


def pairs(methods: list[str] | None, tasks: list[str] | None) -> list[tuple[str, str]]:
    """Every installed (method, task) whose requirements the task meets."""
    registry = get_registry()
    found = []
    for task in tasks or registry.names("task"):
        composed = compose([f"task={task}"], registry=registry)
        spec = build_task(composed).spec
        for method in methods or registry.names("method"):
            try:
                check_compatible(
                    method, registry.get("method", method).cls.requirements, task, spec
                )
            except IncompatiblePairingError:
                continue
            found.append((method, task))
    return found


def run_pair(method: str, task: str, device: str, steps: int, root: Path) -> str:
    """One short run on `device`; "ok (N steps/s)" or what failed."""
    overrides = [
        f"method={method}",
        f"task={task}",
        *TASK_OPTIONS.get(task, []),
        *METHOD_OPTIONS.get(method, []),
        f"steps={steps}",
        "eval_every=0",
        f"device={device}",
        f"runs_root={root}",
        "wandb.enabled=false",
    ]
    try:
        result = twcore.run(overrides)
    except Exception as exc:  # a failing pair is a row of the table, not the end of the check
        return f"FAILED: {type(exc).__name__}: {first_line(exc)}"
    return f"ok ({result.summary['steps_per_s']:.1f} steps/s, {result.summary['device']})"


def data_parallel(device: str, steps: int, root: Path) -> list[str]:
    """Rows comparing an nproc = GPU-count run with a one-device run."""
    count = torch.cuda.device_count() if device.startswith("cuda") else 2
    if count < 2:
        return [f"| data-parallel | skipped: {count} GPU here, NCCL needs one per process |"]
    rows = []
    for method in ("ew", "gradcos"):
        common = [
            f"method={method}",
            "task=toy-multitask",
            "task.train_size=512",
            f"steps={steps * 10}",
            "eval_every=0",
            f"device={device}",
            "wandb.enabled=false",
        ]
        one = twcore.run([*common, f"run_dir={root / (method + '-1')}"])
        many = twcore.run([*common, f"nproc={count}", f"run_dir={root / (method + '-n')}"])
        gap = max(
            abs(many.metrics[s][k] - one.metrics[s][k]) for s in one.metrics for k in one.metrics[s]
        )
        if gap > 1e-4:
            raise AssertionError(f"{method}: {count} processes end {gap:.2e} from one device")
        rows.append(
            f"| data-parallel {method}, nproc={count} | largest metric gap to one device "
            f"{gap:.2e}; {many.summary['steps_per_s']:.1f} vs {one.summary['steps_per_s']:.1f} "
            "steps/s |"
        )
    return rows


PRECISION_METHODS = ("ew", "uw", "gradcos")
"""A weighting with held weights, one weighting the losses' values (both take float16's loss
scale) and one that compares gradients (bfloat16 only: it refuses ``16-mixed``)."""


def reduced_precision(device: str, steps: int, root: Path) -> list[str]:
    """Rows comparing bf16 and 16-mixed runs with a float32 run of the same method: the
    largest relative gap of a test loss, the speed, and float16's loss scale at the end."""
    rows = []
    for method in PRECISION_METHODS:
        common = [
            f"method={method}",
            "task=toy-multitask",
            "task.train_size=512",
            f"steps={steps * 10}",
            "batch_size=128",
            "eval_every=0",
            f"device={device}",
            "wandb.enabled=false",
        ]
        full = twcore.run([*common, f"run_dir={root / (method + '-32')}"])
        for precision in ("bf16", "16-mixed"):
            try:
                half = twcore.run(
                    [*common, f"precision={precision}", f"run_dir={root / (method + precision)}"]
                )
            except ConfigError as refusal:
                rows.append(f"| {method}, precision={precision} | refused: {first_line(refusal)} |")
                continue
            gap = max(
                abs(half.metrics["test"][k] - v) / max(abs(v), 1e-8)
                for k, v in full.metrics["test"].items()
                if k.startswith("loss")
            )
            scale = ""
            if precision == "16-mixed":
                logged = (half.run_dir / "metrics.jsonl").read_text().splitlines()
                scales = [
                    r["train/loss_scale"]
                    for r in map(json.loads, logged)
                    if "train/loss_scale" in r
                ]
                scale = f", loss scale {scales[-1]:g} at the end"
            rows.append(
                f"| {method}, precision={precision} | test losses within {gap:.1e} (relative) of "
                f"float32's; {half.summary['steps_per_s']:.1f} vs "
                f"{full.summary['steps_per_s']:.1f} steps/s{scale} |"
            )
    return rows


def solver_times(device: str, repeats: int) -> list[str]:
    """Forward + backward of each decision task's solver on its test split, CPU vs `device`."""
    rows = []
    for task_name in ("portfolio", "budget-allocation", "cubic-topk"):
        composed = compose([f"task={task_name}"])
        task = build_task(composed)
        times = {}
        layer = task.decision
        assert layer is not None, f"{task_name} has no decision layer"
        for where in ("cpu", device):
            # The true values as predictions: the solver's work does not depend on their quality.
            batch = task.split("test").to(where)  # type: ignore[attr-defined]
            predictions = batch.targets[layer.head].detach().clone()

            times[where] = _median_time(_solve_once(layer, predictions, batch, where), repeats)
        ratio = times["cpu"] / times[device]
        rows.append(
            f"| solver {task_name} | cpu {times['cpu'] * 1e3:.1f} ms, {device} "
            f"{times[device] * 1e3:.1f} ms ({ratio:.2f}× the CPU's speed) |"
        )
    return rows


def _solve_once(
    layer: Any, predictions: torch.Tensor, batch: Any, where: str
) -> Callable[[], None]:
    """Forward + backward of the solver on `batch` once (waiting for the GPU)."""

    def step() -> None:
        leaf = predictions.clone().requires_grad_()
        layer.objective(layer.decide(leaf, batch), batch).mean().backward()
        if where.startswith("cuda"):
            torch.cuda.synchronize()

    return step


def _median_time(run: Callable[[], None], repeats: int) -> float:
    run()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _names(text: str | None) -> list[str] | None:
    return text.split(",") if text else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", help="comma-separated (default: every installed method)")
    parser.add_argument("--tasks", help="comma-separated (default: every installed task)")
    parser.add_argument("--skip-data-parallel", action="store_true")
    parser.add_argument("--skip-solvers", action="store_true")
    parser.add_argument("--skip-precision", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the table here")
    options = parser.parse_args()
    if options.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "gpu_check: CUDA is not available here; run it on a GPU machine, or with "
            "--device cpu to exercise the same checks on the CPU",
            file=sys.stderr,
        )
        return 2
    name = torch.cuda.get_device_name() if options.device.startswith("cuda") else "cpu"
    lines = [
        f"GPU check on {name}, torch {torch.__version__}",
        "",
        "| check | result |",
        "|---|---|",
    ]
    failed = 0
    with tempfile.TemporaryDirectory(prefix="twcore-gpu-check-") as scratch:
        root = Path(scratch)
        for method, task in pairs(_names(options.methods), _names(options.tasks)):
            outcome = run_pair(method, task, options.device, options.steps, root)
            failed += outcome.startswith("FAILED")
            lines.append(f"| {method} × {task} | {outcome} |")
            print(lines[-1], file=sys.stderr, flush=True)
        sections = {
            "data-parallel": (
                lambda: data_parallel(options.device, options.steps, root),
                not options.skip_data_parallel,
            ),
            "precision": (
                lambda: reduced_precision(options.device, options.steps, root),
                not options.skip_precision,
            ),
            "solvers": (
                lambda: solver_times(options.device, options.repeats),
                not options.skip_solvers,
            ),
        }
        for title, (section, enabled) in sections.items():
            if not enabled:
                continue
            try:
                lines.extend(section())
            except Exception as exc:  # report and go on: the table is the product
                failed += 1
                lines.append(f"| {title} | FAILED: {type(exc).__name__}: {first_line(exc)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if options.out is not None:
        options.out.write_text(text, encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
