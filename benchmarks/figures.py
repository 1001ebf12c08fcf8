"""Re-create every figure committed in the repository, one command.

    python3 benchmarks/figures.py                    # every job, one after another
    python3 benchmarks/figures.py --list             # the jobs, their figures and their cost
    python3 benchmarks/figures.py --only rl-returns reproduce-quick

Each figure is written by the script that computes its numbers (a figure is never redrawn from
numbers typed in by hand), so a job re-runs that script: the experiments, the tables next to
the figure (``results.md``/``results.json``) and the figure. Jobs run one at a time on a quiet
machine (their timings go into the tables). The list below is the single record of which
command makes which committed figure; ``tests/test_report_figures.py`` fails when a committed
figure is missing from it, so a new figure comes with the command that makes it.

Minutes are wall time on the 2-core development machine. ``cartpole-200k`` (the paper's
budget) is the long one; leave it out with ``--skip cartpole-200k``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")
QUICK_RUNS = "runs/reproduce-quick"


@dataclass(frozen=True)
class FigureJob:
    """One command and the committed figures it writes.

    Attributes:
        name: what ``--only``/``--skip`` call it.
        command: the command, run from the repository root.
        figures: the committed figures it re-creates (paths from the repository root).
        minutes: its wall time on 2 cores, as measured.
        copy: ``(from, to)``: a directory whose report files (figures, report.md and
            report.json) replace those under ``to`` afterwards (for a report written next to
            its runs); ``from`` is removed first, so every run is made afresh.
    """

    name: str
    command: tuple[str, ...]
    figures: tuple[str, ...]
    minutes: float
    copy: tuple[str, str] | None = None


PY = sys.executable
JOBS = (
    FigureJob(
        "reproduce-quick",
        (PY, "-m", "twcore", "reproduce", "--quick", "--backend", "local", "--workers", "2",
         "--out", QUICK_RUNS),
        tuple(
            f"benchmarks/reproduction_quick/{name}.png"
            for name in (
                "cubic-topk_curve", "digits_curve", "gridworld-aux_curve", "gridworld-aux_main",
                "gridworld-aux_weights", "ldro-points_average_vs_worst", "ldro-points_curve",
                "ldro-points_weights", "mnist-aux_curve", "mnist-aux_main", "mnist-aux_weights",
            )
        ),
        1.0,
        copy=(QUICK_RUNS, "benchmarks/reproduction_quick"),
    ),
    FigureJob(
        "dfl-losses",
        (PY, "-m", "twcore", "reproduce", "--only", "dfl-losses", "--backend", "local",
         "--workers", "2", "--out", "runs/dfl-losses"),
        ("plugins/methods/dfl/docs/knapsack_curve.png",
         "plugins/methods/dfl/docs/shortest-path_curve.png"),
        5.4,
        copy=("runs/dfl-losses", "plugins/methods/dfl/docs"),
    ),
    FigureJob(
        "dfl-losses-lodl",
        (PY, "-m", "twcore", "reproduce", "--only", "dfl-losses-lodl", "--backend", "local",
         "--workers", "2", "--out", "runs/dfl-losses-lodl"),
        ("plugins/methods/dfl/docs/lodl/cubic-topk_curve.png",
         "plugins/methods/dfl/docs/lodl/portfolio_curve.png",
         "plugins/methods/dfl/docs/lodl/budget-allocation_curve.png"),
        25.0,
        copy=("runs/dfl-losses-lodl", "plugins/methods/dfl/docs/lodl"),
    ),
    FigureJob(
        "mtl-weightings",
        (PY, "-m", "twcore", "reproduce", "--only", "mtl-weightings",
         "--out", "runs/mtl-weightings"),
        tuple(
            f"plugins/methods/mtl/docs/{name}.png"
            for name in (
                "mnist-multitask_curve", "mnist-multitask_average_vs_worst",
                "mnist-multitask_weights", "multimnist_curve", "multimnist_main",
                "multimnist_weights",
            )
        ),
        18.0,
        copy=("runs/mtl-weightings", "plugins/methods/mtl/docs"),
    ),
    FigureJob(
        "rl-returns",
        (PY, "plugins/tasks/rl/benchmarks/reproduce.py"),
        ("plugins/tasks/rl/docs/returns.png",),
        2.0,
    ),
    FigureJob(
        "gradcos-alphavil-weights",
        (PY, "plugins/methods/gradcos/benchmarks/reproduce.py"),
        ("plugins/methods/gradcos/docs/weights.png", "plugins/methods/alphavil/docs/weights.png"),
        2.5,
    ),
    FigureJob(
        "adalfl-loss-curves",
        (PY, "plugins/methods/adalfl/benchmarks/reproduce.py"),
        ("plugins/methods/adalfl/docs/loss_curves.png",),
        7.6,
    ),
    FigureJob(
        "ldro-points-mnist",
        (PY, "plugins/methods/ldro/benchmarks/reproduce.py"),
        ("plugins/methods/ldro/docs/points.png", "plugins/methods/ldro/docs/mnist.png"),
        5.4,
    ),
    FigureJob(
        "cartpole",
        (PY, "plugins/tasks/rl/benchmarks/cartpole.py"),
        ("plugins/tasks/rl/docs/cartpole_metric.png",),
        20.7,
    ),
    FigureJob(
        "cartpole-200k",
        (PY, "plugins/tasks/rl/benchmarks/cartpole.py", "--env-steps", "200000",
         "--distractors", "0,32,128", "--methods", "MLE", "TaskMet diagonal",
         "TaskMet diagonal floor 0.1", "--tag", "200k"),
        ("plugins/tasks/rl/docs/cartpole_200k_metric.png",),
        80.0,
    ),
)  # fmt: skip


def committed_figures(root: Path = ROOT) -> list[str]:
    """Every figure file git tracks under `root` (paths from the repository root)."""
    listed = subprocess.run(
        ["git", "ls-files", *(f"*{suffix}" for suffix in FIGURE_SUFFIXES)],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(listed)


REPORT_FILES = ("report.md", "report.json", "workspace.md")
"""What a copied report consists of, besides its figures."""


def is_report_file(path: Path) -> bool:
    return path.is_file() and (path.suffix in FIGURE_SUFFIXES or path.name in REPORT_FILES)


def copy_report(source: Path, target: Path) -> None:
    """Replace the report files (figures, :data:`REPORT_FILES`) under `target` with
    `source`'s, leaving anything else there (a README) alone."""
    target.mkdir(parents=True, exist_ok=True)
    for old in filter(is_report_file, target.iterdir()):
        old.unlink()
    for new in filter(is_report_file, source.iterdir()):
        shutil.copy2(new, target / new.name)


def run_job(job: FigureJob) -> tuple[float, list[str]]:
    """Run one job; its wall minutes and the figures it should have written but did not."""
    if job.copy is not None:
        shutil.rmtree(ROOT / job.copy[0], ignore_errors=True)
    started = time.time()
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}
    subprocess.run(job.command, cwd=ROOT, env=env, check=True)
    if job.copy is not None:
        copy_report(ROOT / job.copy[0], ROOT / job.copy[1])
    missing = [
        f
        for f in job.figures
        if not (ROOT / f).exists() or (ROOT / f).stat().st_mtime < started - 1
    ]
    return (time.time() - started) / 60, missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list the jobs and stop")
    parser.add_argument("--only", nargs="+", default=None, metavar="JOB")
    parser.add_argument("--skip", nargs="+", default=[], metavar="JOB")
    args = parser.parse_args()
    names = [job.name for job in JOBS]
    for name in [*(args.only or []), *args.skip]:
        if name not in names:
            parser.error(f"unknown job '{name}'; jobs: {', '.join(names)}")
    jobs = [
        job
        for job in JOBS
        if (args.only is None or job.name in args.only) and job.name not in args.skip
    ]
    if args.list:
        for job in JOBS:
            print(f"{job.name} (~{job.minutes:g} min): {' '.join(job.command[1:])}")
            for figure in job.figures:
                print(f"    {figure}")
        return 0
    failed = []
    for job in jobs:
        print(f"== {job.name} (~{job.minutes:g} min)", flush=True)
        try:
            minutes, missing = run_job(job)
        except (subprocess.CalledProcessError, OSError) as exc:
            failed.append(job.name)
            print(f"{job.name} failed: {exc}", flush=True)
            continue
        print(f"{job.name}: {minutes:.1f} min", flush=True)
        if missing:
            failed.append(job.name)
            print(f"{job.name} did not write: {', '.join(missing)}", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
