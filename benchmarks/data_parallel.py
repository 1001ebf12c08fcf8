"""Data-parallel speed: the 2-process speed-up of a model large enough to matter, and each
method's communication and step time under data parallelism relative to equal weighting.

    python3 benchmarks/data_parallel.py [--nproc 2] [--steps 200] [--hidden 1024]
        [--decision-steps 100] [--only methods|decision] [--out FILE]

Every run is a real ``twcore run`` (one at a time, so the processes never compete with another
benchmark), on the same global batch: one process with all the machine's cores as threads,
one process with cores ÷ nproc threads, and ``--nproc`` processes with cores ÷ nproc threads
each. Steps per second come from
each run's ``summary.json`` (training time only); the communication per step from the
``communication_per_step`` a data-parallel run records. On one machine the processes share its
cores, so the speed-up measures how well sharding the trunk overlaps work, not a cluster's
scaling. A second table runs the decision-focused losses on their tasks, where the exact
solves are the step's main cost and each process makes its share of them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

METHODS = ["ew", "gradcos", "ldro", "group-dro", "alphavil", "adalfl", "taskmet"]
OUTER_LOOP = {"taskmet": ["method.inner_steps_first=20", "method.inner_steps=20"]}
"""Methods whose step is a whole inner training: a few inner steps, a tenth of the steps."""


def run(overrides: list[str], nproc: int, threads: int, root: Path, name: str) -> dict:
    """One ``twcore run`` of `nproc` processes with `threads` threads each; its summary."""
    run_dir = root / name
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [
        sys.executable,
        "-m",
        "twcore",
        "run",
        *overrides,
        f"nproc={nproc}",
        f"run_dir={run_dir}",
        "wandb.enabled=false",
        "eval_every=0",
        "--quiet",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return json.loads((run_dir / "summary.json").read_text())


DECISION = {
    "spo-plus": ["knapsack", "portfolio"],
    "pfyl": ["knapsack", "portfolio"],
    "two-stage": ["knapsack", "portfolio"],
}
"""The decision-focused losses' table: method -> tasks (at their defaults), whose exact solves
each process makes for its share of the instances."""


def measure(
    overrides: list[str], nproc: int, cores: int, root: Path, name: str
) -> tuple[dict, dict, dict]:
    """Summaries of one process with every core, one with cores ÷ nproc threads, and `nproc`
    processes with cores ÷ nproc threads each."""
    per = max(1, cores // nproc)
    single = run(overrides, 1, cores, root, f"{name}-1")
    narrow = run(overrides, 1, per, root, f"{name}-1-narrow")
    sharded = run(overrides, nproc, per, root, f"{name}-n")
    print(f"{name}: done", file=sys.stderr, flush=True)
    return single, narrow, sharded


def header(cores: int, nproc: int, first: str, ratio: str) -> list[str]:
    per = max(1, cores // nproc)
    return [
        f"| {first} | 1 process × {cores} threads, steps/s | 1 process × {per} thread(s) | "
        f"{nproc} processes × {per} | speed-up, same cores | speed-up, same threads "
        f"per process | {ratio} | all-reduces per step | "
        "all-reduce MiB per step | all-gathers per step | all-gather MiB per step |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]


def row(name: str, runs: tuple[dict, dict, dict], ratio: float) -> str:
    single, narrow, sharded = runs
    moved = sharded["communication_per_step"]
    rate = sharded["steps_per_s"]
    return (
        f"| {name} | {single['steps_per_s']:.1f} | {narrow['steps_per_s']:.1f} | "
        f"{rate:.1f} | {rate / single['steps_per_s']:.2f}× | "
        f"{rate / narrow['steps_per_s']:.2f}× | {ratio:.2f} | "
        f"{moved['all_reduce_calls']:.1f} | {moved['all_reduce_mib']:.2f} | "
        f"{moved['all_gather_calls']:.1f} | {moved['all_gather_mib']:.3f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=1024, help="width of the large mlp")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument(
        "--decision-steps", type=int, default=100, help="steps of the decision losses' runs"
    )
    parser.add_argument(
        "--only",
        choices=["methods", "decision"],
        help="one of the two tables (default: both)",
    )
    parser.add_argument("--out", type=Path, help="also write the tables here (markdown)")
    options = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="twcore-dp-bench-") as scratch:
        root = Path(scratch)
        if options.only in (None, "methods"):
            lines += methods_table(options, cores, root)
        if options.only in (None, "decision"):
            lines += decision_table(options, cores, root)
    text = "\n".join(lines) + "\n"
    print(text)
    if options.out is not None:
        options.out.write_text(text, encoding="utf-8")


def methods_table(options: argparse.Namespace, cores: int, root: Path) -> list[str]:
    """Every method on a model large enough to matter, its step time against ew's."""
    large = [
        "task=toy-multitask",
        "task.input_dim=256",
        "task.train_size=8192",
        f"model.hidden=[{options.hidden},{options.hidden}]",
        f"batch_size={options.batch_size}",
        f"steps={options.steps}",
    ]
    lines = [
        f"Machine: {cores} cores; mlp {options.hidden}×{options.hidden}, "
        f"batch {options.batch_size}, {options.steps} steps.",
        "",
        *header(cores, options.nproc, "method", f"step time / ew's ({options.nproc} proc)"),
    ]
    rows = {}
    for method in METHODS:
        overrides = [f"method={method}", *large, *OUTER_LOOP.get(method, [])]
        if method in OUTER_LOOP:
            overrides.append(f"steps={max(1, options.steps // 10)}")
        rows[method] = measure(overrides, options.nproc, cores, root, method)
    ew_rate = rows["ew"][2]["steps_per_s"]
    lines += [row(m, runs, ew_rate / runs[2]["steps_per_s"]) for m, runs in rows.items()]
    lines.append("")
    lines.append(
        "taskmet: a step is one outer iteration (20 inner steps and the hypergradient), "
        f"{max(1, options.steps // 10)} of them; its step-time ratio is per outer iteration."
    )
    return lines


def decision_table(options: argparse.Namespace, cores: int, root: Path) -> list[str]:
    """The decision-focused losses on their tasks' defaults, each process solving its share of
    the instances; their step time against two-stage's on the same task."""
    lines = [
        "",
        f"Decision-focused losses: tasks at their defaults, {options.decision_steps} steps.",
        "",
        *header(
            cores, options.nproc, "method / task", f"step time / two-stage's ({options.nproc} proc)"
        ),
    ]
    rows = {}
    for method, tasks in DECISION.items():
        for task in tasks:
            overrides = [f"method={method}", f"task={task}", f"steps={options.decision_steps}"]
            rows[method, task] = measure(overrides, options.nproc, cores, root, f"{method}-{task}")
    for (method, task), runs in rows.items():
        plain = rows.get(("two-stage", task), runs)[2]["steps_per_s"]
        lines.append(row(f"{method} / {task}", runs, plain / runs[2]["steps_per_s"]))
    return lines


if __name__ == "__main__":
    main()
