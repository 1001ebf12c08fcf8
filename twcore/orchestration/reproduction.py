"""``twcore reproduce``: every installed plugin's paper-reproduction grids, one report.

A method plugin describes its experiments as sweeps (lists of ``key=a,b`` arguments, the same
as ``twcore sweep``) and registers them through the ``twcore_reproduction_grids`` hook. Each
grid runs into its own directory under the output directory, on any sweep backend, and one
``report.md`` covers them all. ``--quick`` runs each grid's small version (the whole quick
reproduction stays under 5 minutes on 2 cores).

A grid names the plugins its sweeps use; a grid whose plugins are not all installed is skipped
with a one-line reason while the others run. After the runs, the claims the grids state are
decided from them into the claims ledger (``CLAIMS.md`` and ``claims.json``,
:mod:`twcore.orchestration.report.ledger`), which records how long the reproduction took.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twcore.contract.atomic_files import atomic_write_text
from twcore.contract.errors import ConfigError, did_you_mean
from twcore.contract.grids import ReproductionGrid
from twcore.orchestration.backends import SweepOptions
from twcore.orchestration.console import info, warn
from twcore.orchestration.registry import PluginRegistry, get_registry
from twcore.orchestration.report import Report, write_report
from twcore.orchestration.report.collect import read_runs
from twcore.orchestration.report.ledger import Ledger, compute_ledger, write_ledger
from twcore.orchestration.sweep import SweepResult, SweepSpec, run_sweeps


@dataclass
class Reproduction:
    """What ``twcore reproduce`` ran and wrote."""

    out_dir: Path
    sweeps: list[SweepResult]
    report: Report | None
    """None when no run completed (the ledger is written all the same)."""
    ledger: Ledger
    seconds: float | None
    """Wall time of the runs and report (None for a report of existing runs)."""
    skipped: dict[str, str]
    """The grids that did not run, and why."""


def installed_grids(registry: PluginRegistry | None = None) -> list[ReproductionGrid]:
    """The grids of every installed plugin, in plugin order (a failing plugin is skipped)."""
    return (registry or get_registry()).reproduction_grids()


def missing_plugins(grid: ReproductionGrid, registry: PluginRegistry) -> str:
    """Why `grid` cannot run here ("" if every plugin it names is installed)."""
    missing = [
        f"{kind} '{name}'"
        for kind, names in grid.plugins().items()
        for name in names
        if name not in registry.names(kind)
    ]
    if not missing:
        return ""
    return f"needs {', '.join(missing)}, not installed"


def run_reproduction(
    *,
    quick: bool = False,
    only: Sequence[str] = (),
    out_dir: str | Path | None = None,
    report_dir: str | Path | None = None,
    options: SweepOptions | None = None,
    registry: PluginRegistry | None = None,
    extra: Sequence[str] = (),
    run: bool = True,
    plots: bool = True,
) -> Reproduction:
    """Run the selected grids (all by default) and write one report and the claims ledger.

    The runs go under `out_dir` (``GRID/sweep-N``), the report and ledger into `report_dir`
    (default `out_dir`; a plugin's ``docs/``, say). `extra` arguments
    (``wandb.enabled=false``, ``steps=…``) are added to every sweep. A grid whose plugins are
    missing is skipped with a warning; ConfigError if every selected grid is.

    `run` False runs nothing: the report and ledger are computed from the runs already under
    `out_dir` (grids reproduced one at a time into the same directory, say). `plots` False
    writes the report's tables without figures.
    """
    registry = registry or get_registry()
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
    if not run:
        return _report_existing(selected, out_dir, report_dir, extra, plots=plots)
    skipped = {g.name: why for g in selected if (why := missing_plugins(g, registry))}
    for name, why in skipped.items():
        warn(f"reproduce: grid {name} skipped: {why}")
    if len(skipped) == len(selected):
        raise ConfigError(
            "every selected reproduction grid needs a plugin that is not installed: "
            + "; ".join(f"{name} {why}" for name, why in skipped.items())
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(out_dir) if out_dir is not None else Path("runs") / f"reproduce-{stamp}"
    ran = [g for g in selected if g.name not in skipped]
    for grid in ran:
        recorded = recorded_quick(out, [grid])
        if recorded is not None and recorded != quick:
            kind = "--quick" if recorded else "full"
            raise ConfigError(
                f"{out / grid.name} holds the {kind} runs of grid {grid.name}; reproduce into "
                "another --out (quick and full runs of a grid do not mix)"
            )
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    results = run_sweeps(_sweep_specs(ran, out, quick, extra), registry=registry, options=options)
    attempts = {g.name: _attempts(results, out / g.name) for g in ran}
    made = [g for g in ran if any(attempts[g.name])]
    record_invocation(
        out,
        made,
        quick=quick,
        seconds=time.perf_counter() - began,
        resumed={g.name for g in made if not all(attempts[g.name])},
    )
    if any(r.interrupted for r in results):
        warn("reproduce: interrupted; the report covers what completed")
    report, ledger = _write_outputs(selected, ran, out, report_dir, quick, skipped, plots=plots)
    return Reproduction(out, results, report, ledger, time.perf_counter() - began, skipped)


def _attempts(results: Sequence[SweepResult], grid_dir: Path) -> list[int]:
    """How many times this invocation ran each trial of the grid in `grid_dir` (0: it found the
    trial complete)."""
    return [t.attempts for r in results if r.sweep_dir.parent == grid_dir for t in r.trials]


def _report_existing(
    selected: Sequence[ReproductionGrid],
    out_dir: str | Path | None,
    report_dir: str | Path | None,
    extra: Sequence[str],
    *,
    plots: bool,
) -> Reproduction:
    """``--report-only``: the report and ledger of the runs already under `out_dir` (no plugin
    needs to be installed; whether they are quick runs is what their invocations recorded)."""
    if out_dir is None:
        raise ConfigError("--report-only reads the runs of --out DIR; give --out")
    out = Path(out_dir)
    if not out.is_dir():
        raise ConfigError(f"--report-only reads the runs of --out; {out} is not a directory")
    if extra:
        raise ConfigError(
            f"--report-only runs nothing, so settings do not apply; leave out {' '.join(extra)}"
        )
    present = [g for g in selected if (out / g.name).is_dir()]
    if not present:
        raise ConfigError(f"{out} holds no directory of the selected grids")
    quick = recorded_quick(out, present)
    report, ledger = _write_outputs(
        selected, present, out, report_dir, bool(quick), {}, plots=plots
    )
    if report is None:
        raise ConfigError(f"no completed run of the selected grids under {out}")
    return Reproduction(out, [], report, ledger, None, {})


def _write_outputs(
    selected: Sequence[ReproductionGrid],
    present: Sequence[ReproductionGrid],
    out: Path,
    report_dir: str | Path | None,
    quick: bool,
    skipped: dict[str, str],
    *,
    plots: bool,
) -> tuple[Report | None, Ledger]:
    """The report of every completed run of the `present` grids (None if there is none) and
    the ledger of the `selected` grids' claims, both into `report_dir` (default `out`)."""
    directories = [
        sweep_dir
        for grid in present
        for sweep_dir in sorted((out / grid.name).glob("sweep-*"))
        if read_runs(sweep_dir)
    ]
    report_out = Path(report_dir) if report_dir is not None else out
    title = "twcore reproduction" + (" (quick)" if quick else "")
    report = None
    if directories:
        report = write_report(
            directories, out_dir=report_out, title=title, wandb_dir=out, plots=plots
        )
    else:
        warn(f"reproduce: no run completed under {out}; the ledger alone is written")
    seconds, invocations = recorded_time(out, present)
    ledger = compute_ledger(
        selected,
        out,
        quick=quick,
        seconds=seconds,
        invocations=invocations,
        skipped=skipped,
        untimed=[
            g.name
            for g in present
            if recorded_time(out, [g])[0] is None
            and any(d.parent == out / g.name for d in directories)
        ],
    )
    info(f"reproduce: claims ledger in {write_ledger(ledger, report_out)}")
    return report, ledger


INVOCATION_FILE = "reproduction.json"
"""What each grid directory records of the ``twcore reproduce`` invocations that made its runs:
whether they were ``--quick``, and for each, when it began, how long it took (all its grids
together) and which grids it ran. An invocation that runs none of a grid's trials (they were
all complete) leaves the grid's record as it was; one that runs some, the others complete, adds
itself to the record; one that runs all of them starts the record afresh."""


def record_invocation(
    out: Path,
    grids: Sequence[ReproductionGrid],
    *,
    quick: bool,
    seconds: float,
    resumed: Collection[str] = (),
) -> None:
    """Record this invocation in :data:`INVOCATION_FILE` of every grid of `grids` (those it ran
    trials of), after the invocations recorded there before for the grids in `resumed` (those
    whose other runs were complete already)."""
    invocation = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - seconds)),
        "seconds": round(seconds, 1),
        "grids": [grid.name for grid in grids],
    }
    for grid in grids:
        earlier = _invocations(_records(out, [grid])) if grid.name in resumed else []
        record = {"quick": quick, "invocations": [*earlier, invocation]}
        (out / grid.name).mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / grid.name / INVOCATION_FILE, json.dumps(record, indent=2) + "\n")


def _invocations(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The invocations `records` list (a record written before records kept a list is one)."""
    found = []
    for record in records:
        listed = record.get("invocations", [record])
        if isinstance(listed, list):
            found.extend(i for i in listed if isinstance(i, dict))
    return found


def _records(out: Path, grids: Sequence[ReproductionGrid]) -> list[dict[str, Any]]:
    """The readable :data:`INVOCATION_FILE` records of `grids` under `out`."""
    found = []
    for grid in grids:
        try:
            record = json.loads((out / grid.name / INVOCATION_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            found.append(record)
    return found


def recorded_quick(out: Path, grids: Sequence[ReproductionGrid]) -> bool | None:
    """Whether the runs of `grids` under `out` are quick ones, as their invocations recorded
    (None if none did). ConfigError if some are quick and some full."""
    kinds = {bool(record.get("quick")) for record in _records(out, grids)}
    if len(kinds) > 1:
        raise ConfigError(
            f"{out} mixes --quick and full runs of the selected grids; report them apart "
            "(--only), or reproduce into separate --out directories"
        )
    return kinds.pop() if kinds else None


def recorded_time(out: Path, grids: Sequence[ReproductionGrid]) -> tuple[float | None, int]:
    """The wall time of the invocations that made the runs of `grids` under `out` (each counted
    once, however many of its grids are there) and their number; (None, 0) if none recorded
    it."""
    invocations: dict[str, float] = {}
    for record in _invocations(_records(out, grids)):
        try:
            key = str(record["started"]) + ",".join(record["grids"])
            invocations[key] = float(record["seconds"])
        except (KeyError, TypeError, ValueError):
            continue
    return (sum(invocations.values()) if invocations else None), len(invocations)


def _sweep_specs(
    grids: Sequence[ReproductionGrid], out: Path, quick: bool, extra: Sequence[str]
) -> list[SweepSpec]:
    """Every sweep of `grids` (quick or full), labelled, into ``out/GRID/sweep-N``; they run on
    one backend at once, so every worker stays busy."""
    specs = []
    for grid in grids:
        sweeps = grid.quick if quick else grid.sweeps
        info(f"reproduce: {grid.name} ({len(sweeps)} sweep(s)): {grid.description}")
        for index, arguments in enumerate(sweeps):
            directory = out / grid.name / f"sweep-{index}"
            labelled = labelled_arguments(arguments, grid.name)
            specs.append(SweepSpec([*labelled, *extra, f"run_dir={directory}"], grid.name))
    return specs


def labelled_arguments(arguments: Sequence[str], grid: str) -> list[str]:
    """The arguments with every run labelled ``GRID/LABEL`` (or ``GRID``), so that the report
    keeps rows of different grids apart (two grids' ``main-only`` differ in their settings)."""
    result = [a for a in arguments if not a.startswith("label=")]
    given = [a.removeprefix("label=") for a in arguments if a.startswith("label=")]
    result.append(f"label={grid}/{given[-1]}" if given else f"label={grid}")
    return result
