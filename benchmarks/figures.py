"""Re-create every figure committed in the repository, one command.

    python3 benchmarks/figures.py                    # every job, one after another
    python3 benchmarks/figures.py --list             # the jobs, their figures and their cost
    python3 benchmarks/figures.py --only dfl-losses reproduce-quick

Each figure is written by the script that computes its numbers (a figure is never redrawn from
numbers typed in by hand), so a job re-runs that script: the experiments, the tables next to
the figure (a reproduction's ``report.md`` and ``CLAIMS.md``) and the figure. Jobs run one at a
time on a quiet machine (their timings go into the tables). The list below is the single
record of which command makes which committed figure; ``tests/test_report_figures.py`` fails
when a committed figure is missing from it, so a new figure comes with the command that makes
it.

The reproduction jobs run their grids into ``runs/reproduction/GRID`` and write each plugin's
``docs/`` (report and claims ledger); ``claims-ledger`` then writes the ledger of every grid
there into ``benchmarks/reproduction/`` (run it after the others; it runs nothing itself), and
``ldro-points-paths`` and ``cartpole-metric`` draw from the ``ldro`` and ``taskmet-cartpole``
jobs' runs.

Minutes are wall time on the 2-core development machine. ``taskmet-cartpole`` (the paper's
budget of 200,000 environment steps) is the long one; leave it out with
``--skip taskmet-cartpole cartpole-metric``. A reproduction job removes its grid's runs first,
so that every run is made afresh; ``--keep-runs`` keeps them (the completed ones are not run
again), e.g. to redraw a report after adding an arm to a grid.
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


@dataclass(frozen=True)
class FigureJob:
    """One command and the committed figures it writes.

    Attributes:
        name: what ``--only``/``--skip`` call it.
        command: the command, run from the repository root.
        figures: the committed figures it re-creates (paths from the repository root).
        minutes: its wall time on 2 cores, as measured.
        clean: directories removed first, so that every run is made afresh (a reproduction's
            grid directories).
        report_dir: the directory its report goes to, whose report files (figures,
            :data:`REPORT_FILES`) are removed first so that none is stale.
    """

    name: str
    command: tuple[str, ...]
    figures: tuple[str, ...]
    minutes: float
    clean: tuple[str, ...] = ()
    report_dir: str | None = None


PY = sys.executable
RUNS = "runs/reproduction"
"""Where every full reproduction job runs its grids (each into its own ``GRID/``), so that the
claims ledger of them all is one ``--report-only`` over this directory (the last job)."""
QUICK_RUNS = "runs/reproduce-quick"
"""The quick reproduction's runs (quick and full runs of a grid do not mix)."""


def reproduction(
    name: str,
    grids: tuple[str, ...],
    docs: str,
    figures: tuple[str, ...],
    minutes: float,
    *,
    quick: bool = False,
) -> FigureJob:
    """The job that runs `grids` with ``twcore reproduce`` (local backend, 2 workers) into
    :data:`RUNS` (:data:`QUICK_RUNS` for `quick`) and writes their report and claims ledger
    into `docs`: the one command behind a plugin's ``docs/``."""
    runs = QUICK_RUNS if quick else RUNS
    command = (
        PY, "-m", "twcore", "reproduce", *(("--quick",) if quick else ()),
        *(("--only", *grids) if grids else ()), "--backend", "local", "--workers", "2",
        "--out", runs, "--report-dir", docs,
    )  # fmt: skip
    clean = (runs,) if not grids else tuple(f"{runs}/{grid}" for grid in grids)
    return FigureJob(name, command, tuple(f"{docs}/{f}.png" for f in figures), minutes, clean, docs)


AUXILIARY_FIGURES = tuple(
    f"{task}_{kind}"
    for task in ("mnist-aux", "multimnist")
    for kind in ("curve", "main", "weights")
)
JOBS = (
    reproduction(
        "reproduce-quick", (), "benchmarks/reproduction_quick",
        ("cartpole-distractors_curve", "cubic-topk_curve", "digits_curve", "gridworld-aux_curve",
         "gridworld-aux_main", "gridworld-aux_weights", "ldro-points_average_vs_worst",
         "ldro-points_curve", "ldro-points_weights", "mnist-aux_curve", "mnist-aux_main",
         "mnist-aux_weights", "mnist-multitask_average_vs_worst", "mnist-multitask_weights",
         "multimnist_main", "multimnist_weights"),
        3.5, quick=True,
    ),
    reproduction(
        "dfl-losses", ("dfl-losses",), "plugins/methods/dfl/docs",
        ("knapsack_curve", "shortest-path_curve"), 15.1,
    ),
    reproduction(
        "dfl-losses-lodl", ("dfl-losses-lodl",), "plugins/methods/dfl/docs/lodl",
        ("cubic-topk_curve", "portfolio_curve", "budget-allocation_curve"), 60.0,
    ),
    reproduction(
        "mtl-weightings", ("mtl-weightings",), "plugins/methods/mtl/docs",
        ("mnist-multitask_curve", "mnist-multitask_average_vs_worst", "mnist-multitask_weights",
         "multimnist_curve", "multimnist_main", "multimnist_weights"),
        53.2,
    ),
    reproduction(
        "gradcos-auxiliary", ("gradcos-auxiliary",), "plugins/methods/gradcos/docs",
        AUXILIARY_FIGURES, 12.3,
    ),
    reproduction(
        "alphavil-auxiliary", ("alphavil-auxiliary",), "plugins/methods/alphavil/docs",
        AUXILIARY_FIGURES, 8.7,
    ),
    reproduction(
        "adalfl-base-loss", ("adalfl-base-loss",), "plugins/methods/adalfl/docs",
        ("diabetes_curve", "digits_curve", "mnist_curve"), 9.0,
    ),
    reproduction(
        "ldro", ("ldro-points", "ldro-mnist"), "plugins/methods/ldro/docs",
        ("ldro-points_average_vs_worst", "ldro-points_curve", "ldro-points_weights",
         "mnist-multitask_average_vs_worst", "mnist-multitask_curve", "mnist-multitask_weights"),
        19.0,
    ),
    FigureJob(
        "ldro-points-paths",
        (PY, "plugins/tasks/synthetic/benchmarks/plot_ldro_points.py",
         *(f"{RUNS}/ldro-points/sweep-{i}/seed-0" for i in range(3)),
         "--out", "plugins/methods/ldro/docs/diagnostics/points_paths.png"),
        ("plugins/methods/ldro/docs/diagnostics/points_paths.png",),
        0.1,
    ),
    reproduction(
        "gridworld-auxiliary", ("gridworld-auxiliary",), "plugins/tasks/rl/docs/gridworld",
        ("gridworld-aux_curve", "gridworld-aux_main", "gridworld-aux_weights"), 6.8,
    ),
    reproduction(
        "taskmet-decision", ("taskmet-decision",), "plugins/methods/taskmet/docs",
        ("budget-allocation_curve", "cubic-topk_curve", "portfolio_curve"), 16.6,
    ),
    reproduction(
        "taskmet-cartpole", ("taskmet-cartpole",), "plugins/tasks/rl/docs/cartpole",
        ("cartpole-distractors_curve",), 165.0,
    ),
    FigureJob(
        "cartpole-metric",
        (PY, "plugins/tasks/rl/benchmarks/cartpole.py", RUNS,
         "--out", "plugins/tasks/rl/docs/cartpole/metric.png"),
        ("plugins/tasks/rl/docs/cartpole/metric.png",),
        0.1,
    ),
    FigureJob(
        "claims-ledger",
        (PY, "-m", "twcore", "reproduce", "--report-only", "--no-plots", "--out", RUNS,
         "--report-dir", "benchmarks/reproduction"),
        (),
        0.2,
        report_dir="benchmarks/reproduction",
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


REPORT_FILES = (
    "report.md", "report.json", "workspace.md", "workspace.json", "CLAIMS.md", "claims.json",
)  # fmt: skip
"""What a copied report consists of, besides its figures."""


def is_report_file(path: Path) -> bool:
    return path.is_file() and (path.suffix in FIGURE_SUFFIXES or path.name in REPORT_FILES)


def remove_report(directory: Path) -> None:
    """Remove the report files (figures, :data:`REPORT_FILES`) under `directory`, leaving
    anything else there (a README) alone."""
    for old in filter(is_report_file, directory.iterdir() if directory.is_dir() else ()):
        old.unlink()


def run_job(job: FigureJob, *, keep_runs: bool = False) -> tuple[float, list[str]]:
    """Run one job; its wall minutes and the figures it should have written but did not.
    `keep_runs`: leave the job's run directories (:attr:`FigureJob.clean`) in place, so that
    ``twcore reproduce`` reuses their completed runs and makes only the missing ones."""
    for directory in () if keep_runs else job.clean:
        if (ROOT / directory).exists():
            print(f"removing {directory} to run it afresh (--keep-runs reuses it)", flush=True)
        shutil.rmtree(ROOT / directory, ignore_errors=True)
    if job.report_dir is not None:
        remove_report(ROOT / job.report_dir)
    started = time.time()
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}
    subprocess.run(job.command, cwd=ROOT, env=env, check=True)
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
    parser.add_argument(
        "--keep-runs",
        action="store_true",
        help="reuse the completed runs in the jobs' run directories instead of removing them "
        "first (a reproduction job then runs only what is missing, and redraws its report)",
    )
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
            minutes, missing = run_job(job, keep_runs=args.keep_runs)
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
