"""The ``twcore`` subcommands."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from twcore.contract.errors import BrokenPluginError, ConfigError, IncompatiblePairingError
from twcore.contract.pairing import check_compatible
from twcore.orchestration import api
from twcore.orchestration.backends import SweepOptions
from twcore.orchestration.backends.trial_callbacks import worker_callbacks
from twcore.orchestration.bench import benchmark
from twcore.orchestration.cli.listing import warn_failed_plugins
from twcore.orchestration.config.compose import compose
from twcore.orchestration.config.overrides import Override, parse_override, split_sweep
from twcore.orchestration.console import info, warn
from twcore.orchestration.engine.components import build_task
from twcore.orchestration.engine.distributed import prints_results
from twcore.orchestration.engine.threads import pinned_threads
from twcore.orchestration.engine.trainer import RunResult
from twcore.orchestration.registry import PluginRegistry, get_registry
from twcore.orchestration.report.ledger_rewrite import rewrite_ledgers
from twcore.orchestration.report.table import Table
from twcore.orchestration.reproduction import installed_grids, missing_plugins, run_reproduction
from twcore.orchestration.sweep import SweepResult, run_sweep

COMPARE_SEEDS = "0,1,2"


def run(options: argparse.Namespace) -> int:
    """``twcore run [-m] [--dry-run] [--config FILE] key=value ...``"""
    warn_failed_plugins(get_registry())
    if options.dry_run:
        print(api.preview(options.overrides, config_file=options.config), end="")
        return 0
    if options.multirun:
        return sweep(options)
    result = api.run(
        options.overrides,
        config_file=options.config,
        show_progress=not options.quiet,
        callbacks=worker_callbacks(),
    )
    return report_run(result)


def sweep(options: argparse.Namespace) -> int:
    """``twcore sweep [--backend B] [--workers N] ... key=a,b ...`` (also ``twcore run -m``)"""
    warn_failed_plugins(get_registry())
    result = run_sweep(
        options.overrides,
        config_file=options.config,
        label="sweep",
        show_progress=not options.quiet and options.backend == "serial",
        options=sweep_options(options),
    )
    return report_sweep(result)


def tune(options: argparse.Namespace) -> int:
    """``twcore tune [--trials N] [--seeds 0,1] ... key=DISTRIBUTION ... key=value ...``"""
    from twcore.orchestration.tune import TuneOptions, run_tune

    warn_failed_plugins(get_registry())
    result = run_tune(
        options.overrides,
        config_file=options.config,
        options=TuneOptions(
            trials=options.trials,
            seeds=_seeds(options.seeds),
            sampler=options.sampler,
            pruner=options.pruner,
            objective=options.objective,
            aggregate=options.aggregate,
            storage=options.storage,
            study=options.study,
            sampler_seed=options.sampler_seed,
            startup_trials=options.startup_trials,
            prune_after=options.prune_after,
            space_file=options.space,
            backend=sweep_options(options),
        ),
    )
    states = [t.state for t in result.trials]
    print(
        f"study {result.study_name}: {len(states)} trial(s), {states.count('complete')} "
        f"complete, {states.count('pruned')} pruned, {states.count('fail')} failed"
    )
    if result.best is None:
        print(f"no trial completed; report: {result.report}")
        return 1
    params = ", ".join(f"{k}={v}" for k, v in result.best.params.items())
    print(
        f"best: trial {result.best.number}, {result.objective} = {result.best.value:.6g} ({params})"
    )
    print(f"best configuration: {result.best_config}")
    print(f"re-run it: {result.rerun_command}")
    print(f"report: {result.report}")
    return 0


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(f"--seeds {text}: give integers separated by commas, e.g. 0,1,2") from exc


def sweep_options(options: argparse.Namespace) -> SweepOptions:
    """The backend flags of a command line."""
    return SweepOptions(
        backend=options.backend,
        workers=options.workers,
        retries=options.retries,
        threads=options.threads,
        ray_address=options.ray_address,
        cold_start=options.cold_start,
    )


def reproduce(options: argparse.Namespace) -> int:
    """``twcore reproduce [--quick] [--only GRID ...] [--list] [--out DIR] [--report-dir DIR]
    [--report-only] [--rewrite-ledger DIR ...] [backend flags] [key=value ...]``"""
    registry = get_registry()
    warn_failed_plugins(registry)
    if options.rewrite_ledger:
        return _rewrite_ledgers(options, registry)
    if options.list:
        for grid in installed_grids(registry):
            why = missing_plugins(grid, registry)
            print(f"{grid.name}: {grid.description}" + (f" [skipped: {why}]" if why else ""))
            plugins = "; ".join(f"{k}: {', '.join(v)}" for k, v in grid.plugins().items())
            print(f"  plugins: {plugins}")
            for claim in grid.claims:
                print(f"  claim: {claim.text}")
        return 0
    done = run_reproduction(
        quick=options.quick,
        only=options.only,
        out_dir=options.out,
        report_dir=options.report_dir,
        options=sweep_options(options),
        registry=registry,
        extra=options.overrides,
        run=not options.report_only,
        plots=not options.no_plots,
    )
    failed = sum(len(s.failed) for s in done.sweeps)
    took = f" in {done.seconds / 60:.1f} min" if done.seconds is not None else ""
    counts = ", ".join(f"{n} {verdict}" for verdict, n in done.ledger.counts().items() if n)
    where = done.report.path if done.report is not None else "(no report: no run completed)"
    print(f"reproduction written to {where}{took}; claims: {counts or 'none'}")
    if done.report is None:
        return 1
    if any(s.interrupted for s in done.sweeps):
        return 130
    return 1 if failed else 0


def _rewrite_ledgers(options: argparse.Namespace, registry: PluginRegistry) -> int:
    """``--rewrite-ledger DIR ...``: each directory's ledger written again from its
    ``claims.json`` with the installed grids' readings; nothing runs."""
    # DIR ... takes what follows it: a key=value setting there is one too
    settings = [*options.overrides, *(d for d in options.rewrite_ledger if "=" in d)]
    conflicting = [
        flag
        for flag, given in (
            ("--quick", options.quick),
            ("--only", options.only),
            ("--list", options.list),
            ("--report-only", options.report_only),
            ("--no-plots", options.no_plots),
            ("--out", options.out is not None),
            ("--report-dir", options.report_dir is not None),
            ("key=value settings", settings),
        )
        if given
    ]
    if conflicting:
        raise ConfigError(
            "--rewrite-ledger runs nothing and reads no runs, only each DIR's claims.json; "
            f"leave out {', '.join(conflicting)}"
        )
    for path in rewrite_ledgers(options.rewrite_ledger, installed_grids(registry)):
        print(f"ledger rewritten: {path}")
    return 0


def bench(options: argparse.Namespace) -> int:
    """``twcore bench [--steps N] [--repeats R] task=NAME [model=NAME] [key=value ...]``"""
    registry = get_registry()
    warn_failed_plugins(registry)
    overrides = [parse_override(a) for a in options.overrides]
    methods = compatible_methods(registry, overrides, None, command="bench")
    if options.threads is not None and options.threads < 1:
        raise ConfigError(f"--threads={options.threads}: give 1 or more")
    pinned = pinned_threads(options.threads) if options.threads else contextlib.nullcontext()
    with pinned:
        result = benchmark(
            options.overrides,
            methods,
            steps=options.steps,
            repeats=options.repeats,
            baseline=options.baseline,
            registry=registry,
        )
    described = " ".join(options.overrides) or "default task and model"
    title = (
        f"time per step ÷ {result.baseline}'s ({described}; K = {result.objectives} "
        f"objectives; {options.steps} steps, best of {options.repeats}; "
        f"{result.threads} torch thread(s))"
    )
    print(result.table(title).to_markdown(mark_best=False, show_count=False))
    return 0


def resume(options: argparse.Namespace) -> int:
    """``twcore resume RUN_DIR [key=value ...]``"""
    warn_failed_plugins(get_registry())
    result = api.resume(
        options.run_dir,
        options.overrides,
        show_progress=not options.quiet,
        callbacks=worker_callbacks(),
    )
    return report_run(result)


def compare(options: argparse.Namespace) -> int:
    """``twcore compare [key=value ...]``: every compatible installed method × seeds."""
    registry = get_registry()
    warn_failed_plugins(registry)
    overrides = [parse_override(a) for a in options.overrides]
    keys = {o.key for o in overrides}
    arguments = list(options.overrides)
    if "method" not in keys:
        methods = compatible_methods(registry, overrides, options.config, command="compare")
        arguments.append(f"method={','.join(methods)}")
    if "seed" not in keys:
        arguments.append(f"seed={COMPARE_SEEDS}")
    result = run_sweep(
        arguments,
        config_file=options.config,
        label="compare",
        show_progress=not options.quiet and options.backend == "serial",
        options=sweep_options(options),
    )
    return report_sweep(result)


def compatible_methods(
    registry: PluginRegistry,
    overrides: list[Override],
    config_file: str | None,
    *,
    command: str,
) -> list[str]:
    """Installed methods that can run on the configured task. Each one left out is reported on
    a line of its own, prefixed by `command`: a method the task cannot serve, a name that two
    plugins register (ambiguous, with the hint that resolves it), and a plugin whose class does
    not import."""
    names = registry.names("method")
    if not names:
        raise ConfigError("no method plugins are installed; see `twcore plugins`")
    unambiguous = []
    for name in names:
        if registry.is_ambiguous("method", name):
            info(f"{command}: skipping method '{name}': {registry.ambiguity('method', name)}")
            continue
        try:
            registry.get("method", name)  # imports a class registered by import path
        except BrokenPluginError as exc:
            info(f"{command}: skipping method '{name}': {exc}")
            continue
        unambiguous.append(name)
    if not unambiguous:
        raise ConfigError("every installed method name is ambiguous; see `twcore plugins`")
    first_values = [Override(o.key, split_sweep(o.text)[0]) for o in overrides]
    composed = compose(
        [*first_values, Override("method", unambiguous[0])],
        config_file=config_file,
        registry=registry,
    )
    task_name = composed.plugins["task"].name
    spec = build_task(composed).spec
    fitting = []
    for name in unambiguous:
        try:
            check_compatible(name, registry.get("method", name).cls.requirements, task_name, spec)
        except IncompatiblePairingError as exc:
            info(f"{command}: skipping method '{name}': {exc}")
            continue
        fitting.append(name)
    if not fitting:
        raise IncompatiblePairingError(f"no installed method can run on task '{task_name}'")
    return fitting


def report_run(result: RunResult) -> int:
    """Print the final metrics of a run and where it was written; the exit code (130 if the run
    was stopped by a signal)."""
    summary = result.summary
    if not prints_results():
        return 130 if summary["status"] == "interrupted" else 0
    if summary["status"] == "interrupted":
        print(f"{summary['error']}; continue with `twcore resume {result.run_dir}`")
        return 130
    shown = summary["task"]["summary_metrics"]
    table = Table(
        f"{summary['config']['method']['name']} on {summary['config']['task']['name']}",
        ["split"],
        list(shown),
    )
    for split, values in summary["metrics"].items():
        table.add((split,), values)
    print(table.to_markdown(mark_best=False, show_count=False))
    print(f"run written to {result.run_dir}")
    line = wandb_line(summary.get("wandb", {}))
    if line:
        print(line)
    return 0


def wandb_line(wandb: dict[str, Any]) -> str | None:
    """Where a run's W&B run is: its URL online, the ``wandb sync`` command of an offline run."""
    if not wandb.get("run_id") or not wandb.get("dir"):
        return None
    if wandb.get("url"):
        return f"W&B run {wandb.get('name')}: {wandb['url']}"
    offline = Path(wandb["dir"]).parent
    return f"W&B run {wandb.get('name')} ({wandb['mode']}); upload it: wandb sync {offline}"


def report_sweep(result: SweepResult) -> int:
    """Print the sweep's tables and where the runs went; exit code 1 if any trial failed."""
    for table in result.tables:
        print(table.to_markdown())
    for trial in result.failed:
        print(f"{trial.name}: {trial.status}: {trial.error}")
    print(f"runs written to {result.sweep_dir} (tables in {Path(result.sweep_dir) / 'results.md'})")
    offline = sorted(Path(result.sweep_dir).glob("*/wandb/offline-run-*"))
    if offline:
        pattern = Path(result.sweep_dir) / "*" / "wandb" / "offline-run-*"
        print(f"W&B: {len(offline)} offline run(s); upload them: wandb sync {pattern}")
    if result.interrupted:
        return 130
    if result.failed:
        warn(f"{len(result.failed)} of {len(result.trials)} run(s) did not complete")
        return 1
    return 0


__all__ = [
    "bench",
    "compare",
    "reproduce",
    "resume",
    "run",
    "sweep",
    "tune",
]
