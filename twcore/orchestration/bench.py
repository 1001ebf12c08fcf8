"""``twcore bench``: each installed method's time per training step as a multiple of a baseline
method's (``--baseline``, by default the installed default method).

Every method that fits the task trains the same model for the same steps in this process (no
evaluation, no checkpoints, no W&B), in turns, ``repeats`` times; the fastest run of each
counts. The ratio is whole-run wall time per step ÷ the baseline's, so per-epoch work (αVIL) is
amortised over the epoch. Methods that declare an outer-loop step (``Method.outer_loop``:
TaskMet's step is a whole inner training) run their own suggested number of steps (at most
``steps``) and are marked.

Beside the ratio, each method's **backward-pass equivalents**: (its step − a forward pass) ÷
(the baseline's step − a forward pass), with the forward pass (the objectives' losses on a
training batch, with their graph) of the same task and model timed on its own, in the same
process and threads: how many of the baseline's backward-and-update a method's step costs.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from twcore.contract.errors import ConfigError
from twcore.contract.task import stack_objective_losses
from twcore.orchestration import api
from twcore.orchestration.config.compose import compose
from twcore.orchestration.config.overrides import parse_override
from twcore.orchestration.console import info
from twcore.orchestration.engine.components import build_task
from twcore.orchestration.engine.device import resolve_device
from twcore.orchestration.engine.rng import seed_everything
from twcore.orchestration.registry import PluginRegistry, get_registry
from twcore.orchestration.report.table import Table


@dataclass
class BenchResult:
    """Seconds per step of each method (fastest run), the ratio to the baseline's, and the steps
    each run took."""

    baseline: str
    seconds: dict[str, float]
    outer_step: set[str]
    steps: dict[str, int]
    objectives: int = 0
    """K, the task's number of objectives (0 if no run finished)."""
    threads: int = 0
    """The torch threads the runs used (0 if no run finished)."""
    forward: float = 0.0
    """Seconds of one forward pass of the task's model on a training batch (losses included)."""

    def ratio(self, method: str) -> float:
        return self.seconds[method] / self.seconds[self.baseline]

    def backward_equivalents(self, method: str) -> float:
        """(the method's step − a forward pass) ÷ (the baseline's step − a forward pass)."""
        return (self.seconds[method] - self.forward) / (self.seconds[self.baseline] - self.forward)

    def table(self, title: str) -> Table:
        table = Table(
            title,
            ["method"],
            ["steps", "ms_per_step", "ratio_to_baseline", "backward_equivalents"],
            directions={
                "ms_per_step": "min",
                "ratio_to_baseline": "min",
                "backward_equivalents": "min",
            },
        )
        for method, seconds in self.seconds.items():
            label = f"{method} (outer step)" if method in self.outer_step else method
            table.add(
                (label,),
                {
                    "steps": self.steps[method],
                    "ms_per_step": 1000 * seconds,
                    "ratio_to_baseline": self.ratio(method),
                    "backward_equivalents": self.backward_equivalents(method),
                },
            )
        return table


def benchmark(
    overrides: Sequence[str],
    methods: Sequence[str],
    *,
    steps: int = 300,
    repeats: int = 3,
    baseline: str | None = None,
    registry: PluginRegistry | None = None,
) -> BenchResult:
    """Time `methods` (plus the baseline, default: the installed default method) on the task
    and model the overrides choose."""
    registry = registry or get_registry()
    baseline = baseline or registry.default_name("method")
    registry.get("method", baseline)  # an unknown or ambiguous baseline fails here, clearly
    if any(parse_override(o).key == "method" for o in overrides):
        raise ConfigError("twcore bench times every fitting method; leave out method=")
    ordered = [baseline, *(m for m in methods if m != baseline)]
    # A method whose step is a whole outer iteration runs its own suggested number of steps
    # (TaskMet: 30), not `steps` of them, which would take minutes.
    classes = {m: registry.get("method", m).cls for m in ordered}
    outer = {m for m in ordered if classes[m].outer_loop}
    counts = {
        m: min(steps, int(classes[m].run_defaults.get("steps", steps))) if m in outer else steps
        for m in ordered
    }
    seconds = dict.fromkeys(ordered, float("inf"))
    objectives = threads = 0
    total = repeats * len(ordered)
    with tempfile.TemporaryDirectory(prefix="twcore-bench-") as scratch:
        for repeat in range(repeats):
            for index, method in enumerate(ordered):
                count = counts[method]
                quiet = [
                    f"steps={count}",
                    "eval_every=0",
                    "checkpoint_every=0",
                    f"log_every={count}",
                    "wandb.enabled=false",
                    "keep_best=false",
                ]
                run_dir = Path(scratch) / f"{method}-{repeat}"
                result = api.run(
                    [*overrides, f"method={method}", *quiet, f"run_dir={run_dir}"],
                    registry=registry,
                )
                if result.summary["status"] == "interrupted":  # a stop signal ends the benchmark
                    raise KeyboardInterrupt
                per_step = result.summary["wall_time_s"] / count
                objectives = len(result.summary["task"]["objectives"])
                threads = int(result.summary.get("threads", {}).get("threads", 0))
                seconds[method] = min(seconds[method], per_step)
                done = repeat * len(ordered) + index + 1
                info(
                    f"bench: [{done}/{total}] {method} (run {repeat + 1} of {repeats}): "
                    f"{1000 * per_step:.3g} ms per step"
                )
        forward = forward_seconds(
            [*overrides, f"method={baseline}"], steps=steps, repeats=repeats, registry=registry
        )
    return BenchResult(baseline, seconds, outer, counts, objectives, threads, forward)


def forward_seconds(
    overrides: Sequence[str], *, steps: int, repeats: int, registry: PluginRegistry
) -> float:
    """Seconds of one forward pass — the objectives' losses on a training batch, with their
    graph — of the task and model `overrides` choose: the fastest of `repeats` passes over
    `steps` batches, drawn beforehand (data loading is not timed), in this process's threads."""
    composed = compose([parse_override(o) for o in overrides], registry=registry)
    run = composed.run
    seed_everything(run.seed, deterministic=run.deterministic)
    device = resolve_device(run.device)
    task = build_task(composed)
    model = composed.plugins["model"].cls(composed.sections["model"], task.spec).to(device)
    stream = task.stream("train", run.batch_size, seed=run.seed, device=device, model=model)
    batches = list(itertools.islice(stream, min(steps, 50)))
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for batch in itertools.islice(itertools.cycle(batches), steps):
            losses = stack_objective_losses(task, model(batch.inputs), batch)
            del losses
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, (time.perf_counter() - started) / steps)
    return best


def matmul_flops_per_step(
    options: Mapping[str, object], *, short: int, long: int, root: Path
) -> float:
    """Matrix-product FLOPs (matmuls and convolutions, forward and every backward pass, as
    ``torch.utils.flop_counter`` counts them) of one training step of the run `options`
    describe: (a `long`-step run's − a `short`-step run's) / (long − short), so set-up and the
    final evaluation cancel. With whole epochs for `short` and `long`, per-epoch work (αVIL's)
    is included. The runs go into `root`/short and `root`/long.
    """
    if not 0 <= short < long:
        raise ValueError(f"need 0 <= short < long, got short={short}, long={long}")
    totals = []
    for steps in (short, long):
        with FlopCounterMode(display=False) as counter:
            api.run({**options, "steps": steps, "run_dir": str(root / str(steps))})
        totals.append(counter.get_total_flops())
    return (totals[1] - totals[0]) / (long - short)


def op_profile(
    options: Mapping[str, object], steps: int, *, baseline: Mapping[str, object], rows: int = 12
) -> str:
    """Where the time of a step of the run `options` describe goes, as markdown: the ops with
    the most self CPU time (``torch.profiler``), in calls and ms per step, and the aten calls a
    step makes beside the `baseline` run's (both averaged over `steps`, set-up included, so
    use enough steps). The two runs must differ in their ``run_dir``."""
    events = _profiled(options)
    baseline_events = _profiled(baseline)
    calls, baseline_calls = (
        sum(e.count for e in found if e.key.startswith("aten::")) / steps
        for found in (events, baseline_events)
    )
    table = profile_table(events, steps, rows=rows)
    return f"{table}\n\naten calls per step: {calls:.0f}, the baseline's {baseline_calls:.0f}"


def profile_table(events: Sequence[Any], steps: int, *, rows: int = 12) -> str:
    """Markdown of ``torch.profiler`` events (``key_averages()``) over `steps` steps: the op
    time per step, then the `rows` ops with the most self CPU time, their calls and ms per step
    and share of the op time."""
    ordered = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ordered) / 1000 / steps
    lines = [
        f"{total:.2f} ms of op time per step; the largest:",
        "",
        "| op | calls per step | self ms per step | share |",
        "|---|---|---|---|",
    ]
    for event in ordered[:rows]:
        per_step = event.self_cpu_time_total / 1000 / steps
        share = per_step / total if total > 0 else 0.0
        lines.append(f"| {event.key} | {event.count / steps:.1f} | {per_step:.2f} | {share:.0%} |")
    return "\n".join(lines)


def _profiled(options: Mapping[str, object]) -> list[Any]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        api.run(dict(options))
    return list(profiler.key_averages())
