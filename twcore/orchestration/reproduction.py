"""``twcore reproduce``: every installed plugin's paper-reproduction grids, one report.

A method plugin describes its experiments as sweeps (lists of ``key=a,b`` arguments, the same
as ``twcore sweep``) and registers them through the ``twcore_reproduction_grids`` hook. Each
grid runs into its own directory under the output directory, on any sweep backend, and one
``report.md`` covers them all. ``--quick`` runs each grid's small version (the whole quick
reproduction stays under 10 minutes on 2 cores).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from twcore.contract.errors import ConfigError, did_you_mean
from twcore.contract.grids import ReproductionGrid
from twcore.orchestration.backends import SweepOptions
from twcore.orchestration.console import info, warn
from twcore.orchestration.engine.summary import finished
from twcore.orchestration.registry import PluginRegistry, get_registry
from twcore.orchestration.report import Report, write_report
from twcore.orchestration.sweep import SweepResult, SweepSpec, run_sweeps


@dataclass
class Reproduction:
    """What ``twcore reproduce`` ran and wrote."""

    out_dir: Path
    sweeps: list[SweepResult]
    report: Report
    seconds: float


def installed_grids(registry: PluginRegistry | None = None) -> list[ReproductionGrid]:
    """The grids of every installed plugin, in plugin order (a failing plugin is skipped)."""
    return (registry or get_registry()).reproduction_grids()


def run_reproduction(
    *,
    quick: bool = False,
    only: Sequence[str] = (),
    out_dir: str | Path | None = None,
    options: SweepOptions | None = None,
    registry: PluginRegistry | None = None,
    extra: Sequence[str] = (),
) -> Reproduction:
    """Run the selected grids (all by default) and write one report into `out_dir`.

    `extra` arguments (``wandb.enabled=false``, ``steps=…``) are added to every sweep.
    """
    grids = installed_grids(registry)
    names = [g.name for g in grids]
    for name in only:
        if name not in names:
            raise ConfigError(
                f"no reproduction grid '{name}'{did_you_mean(name, names)}; "
                f"installed: {', '.join(names) or 'none'}"
            )
    selected = [g for g in grids if not only or g.name in only]
    if not selected:
        raise ConfigError("no installed plugin contributes a reproduction grid")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(out_dir) if out_dir is not None else Path("runs") / f"reproduce-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    specs = []
    for grid in selected:
        sweeps = grid.quick if quick else grid.sweeps
        info(f"reproduce: {grid.name} ({len(sweeps)} sweep(s)): {grid.description}")
        for index, arguments in enumerate(sweeps):
            directory = out / grid.name / f"sweep-{index}"
            labelled = labelled_arguments(arguments, grid.name)
            specs.append(SweepSpec([*labelled, *extra, f"run_dir={directory}"], grid.name))
    # Every trial of every grid on one backend at once: all workers stay busy.
    results = run_sweeps(specs, registry=registry, options=options)
    if any(r.interrupted for r in results):
        warn("reproduce: interrupted; the report covers what completed")
    directories = [r.sweep_dir for r in results if any(finished(t.status) for t in r.trials)]
    title = "twcore reproduction" + (" (quick)" if quick else "")
    report = write_report(directories, out_dir=out, title=title)
    return Reproduction(out, results, report, time.perf_counter() - began)


def labelled_arguments(arguments: Sequence[str], grid: str) -> list[str]:
    """The arguments with every run labelled ``GRID/LABEL`` (or ``GRID``), so that the report
    keeps rows of different grids apart (two grids' ``main-only`` differ in their settings)."""
    result = [a for a in arguments if not a.startswith("label=")]
    given = [a.removeprefix("label=") for a in arguments if a.startswith("label=")]
    result.append(f"label={grid}/{given[-1]}" if given else f"label={grid}")
    return result
