"""Running the cartesian product of ``key=a,b,c`` overrides and tabulating the results.

Every trial is composed (and so validated) before the first one starts, so a typo in any
combination fails fast. Trials run one after another in this process, each in its own run
directory under the sweep directory and its own W&B run in the sweep's W&B group.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from twcore.contract.atomic_files import atomic_write_text
from twcore.contract.errors import ConfigError, UsageError
from twcore.orchestration.backends import SweepOptions, TrialJob, TrialOutcome, get_backend
from twcore.orchestration.backends.trial import completed_summary
from twcore.orchestration.config.compose import ComposedConfig, compose
from twcore.orchestration.config.overrides import Override, parse_override, split_sweep
from twcore.orchestration.console import info, warn
from twcore.orchestration.engine.best import metric_goal
from twcore.orchestration.engine.components import build_task
from twcore.orchestration.engine.summary import finished
from twcore.orchestration.registry import PluginRegistry
from twcore.orchestration.report.collect import RunRecord
from twcore.orchestration.report.table import RUN_COLUMNS, Table
from twcore.orchestration.report.task_tables import report_tables

TRIAL_CONFIGS = ".trials"
TRIAL_LOGS = ".logs"
TRIAL_PIDS = ".workers"


@dataclass
class Trial:
    """One combination of the sweep."""

    name: str
    overrides: list[Override]
    swept: dict[str, str]
    composed: ComposedConfig | None = None
    summary: dict[str, Any] | None = None
    status: str = "pending"
    error: str | None = None
    attempts: int = 0


@dataclass
class SweepResult:
    """The sweep directory, the trials and the tables built from their summaries."""

    sweep_dir: Path
    trials: list[Trial]
    tables: list[Table] = field(default_factory=list)

    @property
    def failed(self) -> list[Trial]:
        """Trials that ran but did not complete (diverged, failed, interrupted)."""
        return [t for t in self.trials if not finished(t.status) and t.status != "pending"]

    @property
    def interrupted(self) -> bool:
        """Whether a stop request ended the sweep early."""
        return any(t.status == "interrupted" for t in self.trials)


def expand(arguments: Sequence[str]) -> tuple[list[str], list[list[Override]]]:
    """The swept keys and every combination of overrides (later keys vary fastest)."""
    parsed = [parse_override(a) for a in arguments]
    choices: list[list[Override]] = []
    swept_keys: list[str] = []
    for override in parsed:
        values = split_sweep(override.text)
        if len(values) > 1:
            given = [str(o) for o in parsed if o.key == override.key]
            if len(given) > 1:
                raise ConfigError(
                    f"{override.key} is swept and given {len(given)} times ({', '.join(given)}); "
                    "give a swept key once"
                )
            swept_keys.append(override.key)
        choices.append([Override(override.key, value) for value in values])
    return swept_keys, [list(combo) for combo in itertools.product(*choices)]


MAX_TRIAL_NAME = 120
TRIAL_HASH_LENGTH = 12
_PLAIN_VALUE = re.compile(r"[a-z0-9.+-]+")


def trial_name(swept: dict[str, str]) -> str:
    """A directory name for a trial, unique among a sweep's trials by construction.

    Readable when it can be, ``method-ew_seed-0``: the last part of each swept key and its value,
    in the sweep's key order. That spelling is used bare only when it is unambiguous and portable
    — every value of lowercase letters, digits and ``.+-`` (so ``_`` only joins pairs, and names
    differing in case never meet on a case-insensitive filesystem), distinct key names, at most
    :data:`MAX_TRIAL_NAME` characters. Otherwise a readable prefix is followed by ``=`` and a
    hash of the full set of swept values: no bare name holds an ``=``, so the two kinds of name
    never meet, and two different trials never share a directory.
    """
    if not swept:
        return "trial"
    leaves = [key.split(".")[-1] for key in swept]
    pairs = zip(leaves, swept.values(), strict=True)
    readable = "_".join(f"{leaf}-{value}" for leaf, value in pairs)
    plain = (
        all(_PLAIN_VALUE.fullmatch(value) for value in swept.values())
        and len(set(leaves)) == len(leaves)
        and len(readable) <= MAX_TRIAL_NAME
    )
    if plain:
        return readable
    canonical = json.dumps(sorted(swept.items()), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:TRIAL_HASH_LENGTH]
    room = MAX_TRIAL_NAME - TRIAL_HASH_LENGTH - 1
    prefix = re.sub(r"[^a-z0-9_.+-]+", "", readable.lower())[:room]
    return f"{prefix}={digest}"


def plan(
    arguments: Sequence[str],
    *,
    config_file: str | Path | None = None,
    registry: PluginRegistry | None = None,
) -> tuple[list[str], list[Trial]]:
    """Expand and compose every trial (UsageError on the first invalid combination)."""
    swept_keys, combos = expand(arguments)
    trials = []
    checked_tasks: set[str] = set()
    for combo in combos:
        swept = {o.key: o.text for o in combo if o.key in swept_keys}
        trial = Trial(trial_name(swept), combo, swept)
        try:
            trial.composed = compose(combo, config_file=config_file, registry=registry)
            _check_best_metric_once(trial.composed, checked_tasks)
        except UsageError as exc:
            where = f" (trial {', '.join(f'{k}={v}' for k, v in swept.items())})" if swept else ""
            raise type(exc)(f"{exc}{where}") from exc
        trials.append(trial)
    names = [t.name for t in trials]
    assert len(set(names)) == len(names), f"trial names collide: {names}"
    return swept_keys, trials


def _refuse_data_parallel_trials(trials: Sequence[Trial]) -> None:
    """ConfigError before anything is written if a trial asks for several processes: a sweep
    runs each trial as one process (its backend owns the machine's cores)."""
    for trial in trials:
        if trial.composed is not None and trial.composed.run.nproc > 1:
            raise ConfigError(
                f"nproc={trial.composed.run.nproc} in trial {trial.name}: sweep trials run as "
                "one process each; run a data-parallel configuration with `twcore run` (or "
                "torchrun), one at a time"
            )


def _check_best_metric_once(composed: ComposedConfig, checked: set[str]) -> None:
    """The run's ``best_metric`` against its task's metrics, building each distinct task
    configuration once (only when a ``best_metric`` is set), before anything is written."""
    if not composed.run.best_metric:
        return
    task = {**composed.to_dict()["task"], "best_metric": composed.run.best_metric}
    key = json.dumps(task, sort_keys=True, default=str)
    if key not in checked:
        checked.add(key)
        name = composed.plugins["task"].name
        metric_goal(composed.run.best_metric, build_task(composed), task_name=f"task '{name}'")


@dataclass
class SweepSpec:
    """One sweep to run: its ``key=a,b`` arguments and the label of its default directory."""

    arguments: Sequence[str]
    label: str = "sweep"


def run_sweep(
    arguments: Sequence[str],
    *,
    config_file: str | Path | None = None,
    registry: PluginRegistry | None = None,
    label: str = "sweep",
    show_progress: bool = False,
    options: SweepOptions | None = None,
) -> SweepResult:
    """Run every combination and write ``results.md`` and ``results.json`` in the sweep dir.

    Trials whose run directory already holds a completed run are not run again, so re-running a
    sweep (same ``run_dir``) finishes only what is missing. Each trial is its own W&B run in the
    sweep's group, tagged ``method:NAME``, ``task:NAME`` and ``seed:N``.
    """
    options = options or SweepOptions()
    if show_progress:
        options = dataclasses.replace(options, show_progress=True)
    (result,) = run_sweeps(
        [SweepSpec(arguments, label)], config_file=config_file, registry=registry, options=options
    )
    return result


def run_sweeps(
    specs: Sequence[SweepSpec],
    *,
    config_file: str | Path | None = None,
    registry: PluginRegistry | None = None,
    options: SweepOptions | None = None,
) -> list[SweepResult]:
    """Several sweeps, every trial of all of them on one backend at once (so a local or Ray
    backend keeps all its workers busy); each sweep keeps its own directory and results."""
    options = options or SweepOptions()
    backend = get_backend(options)
    planned = [plan(spec.arguments, config_file=config_file, registry=registry) for spec in specs]
    for _, trials in planned:
        _refuse_data_parallel_trials(trials)
    results: list[SweepResult] = []
    queue = _TrialQueue()
    for spec, (_, trials) in zip(specs, planned, strict=True):
        results.append(_queue_sweep(spec, trials, queue, options.backend))
    backend.check_plugins(queue.jobs)
    try:
        backend.run(queue.jobs, queue.record)
    except KeyboardInterrupt:
        # Trials that never started stay "pending": running the sweep again finishes them.
        warn(
            f"sweep stopped at trial {max(queue.finished, 1)} of {len(queue.jobs)}; completed "
            "trials are kept, and the same command runs the rest"
        )
    for result, (swept_keys, _) in zip(results, planned, strict=True):
        result.tables = tabulate(result.trials, swept_keys)
        write_results(result)
    return results


class _TrialQueue:
    """The jobs a backend is to run, and the recording of each outcome on its trial."""

    def __init__(self) -> None:
        self.jobs: list[TrialJob] = []
        self.owners: dict[str, Trial] = {}
        self.finished = 0

    def add(self, job: TrialJob, trial: Trial) -> None:
        self.owners[str(job.run_dir)] = trial
        self.jobs.append(job)

    def record(self, job: TrialJob, outcome: TrialOutcome) -> None:
        """A backend's report of one trial (``on_outcome``)."""
        self.finished += 1
        trial = self.owners[str(job.run_dir)]
        trial.status, trial.error, trial.attempts = outcome.status, outcome.error, outcome.attempts
        trial.summary = outcome.summary if finished(outcome.status) else None
        retried = f" after {outcome.attempts} attempts" if outcome.attempts > 1 else ""
        result = f" ({headline(trial.summary)})" if trial.summary else ""
        info(
            f"[{self.finished}/{len(self.jobs)}] {job.description}: {outcome.status}{retried}"
            f"{result}"
        )
        if not finished(outcome.status) and outcome.status not in ("interrupted", "pending"):
            warn(f"{job.description}: {outcome.error}")


def headline(summary: dict[str, Any]) -> str:
    """A finished run in a few words: its wall time and its task's primary metric (test, else
    validation), e.g. ``12.3 s, test main_acc=0.831``."""
    parts = [f"{float(summary.get('wall_time_s', 0.0)):.1f} s"]
    metric = (summary.get("task") or {}).get("primary_metric")
    metrics = summary.get("metrics") or {}
    for split in ("test", "val"):
        value = (metrics.get(split) or {}).get(metric)
        if isinstance(value, int | float):
            parts.append(f"{split} {metric}={value:.4g}")
            break
    return ", ".join(parts)


def _queue_sweep(
    spec: SweepSpec, trials: list[Trial], queue: _TrialQueue, backend: str
) -> SweepResult:
    """Prepare one sweep's directory and trials; queue those not yet completed."""
    first = trials[0].composed
    assert first is not None
    sweep_dir = _sweep_dir(first, spec.label)
    group = first.run.wandb.group or sweep_dir.name
    skipped = 0
    for trial in trials:
        job = _prepare(trial, sweep_dir, group)
        summary = completed_summary(job.run_dir)
        if summary is not None:
            trial.summary, trial.status = summary, str(summary["status"])
            skipped += 1
        else:
            queue.add(job, trial)
    info(
        f"{spec.label}: {len(trials)} run(s) in {sweep_dir} on the {backend} backend"
        + (f" ({skipped} already complete)" if skipped else "")
    )
    return SweepResult(sweep_dir, trials)


def _prepare(trial: Trial, sweep_dir: Path, group: str) -> TrialJob:
    """Give the trial its run directory, W&B group and tags; write its configuration file."""
    composed = trial.composed
    assert composed is not None
    run_dir = sweep_dir / trial.name
    config_path = sweep_dir / TRIAL_CONFIGS / f"{trial.name}.yaml"
    place_trial(composed, run_dir, group, config_path)
    described = ", ".join(f"{k}={v}" for k, v in trial.swept.items()) or "single run"
    return TrialJob(
        name=trial.name,
        run_dir=run_dir,
        config_path=config_path,
        log_path=sweep_dir / TRIAL_LOGS / f"{trial.name}.log",
        pid_path=sweep_dir / TRIAL_PIDS / f"{trial.name}.pid",
        description=described,
        composed=composed,
    )


def place_trial(
    composed: ComposedConfig,
    run_dir: Path,
    group: str,
    config_path: Path,
    extra_tags: Sequence[str] = (),
) -> None:
    """Give a trial's configuration its run directory, W&B group and tags (``method:NAME``,
    ``task:NAME``, ``seed:N`` and `extra_tags`, after the user's own), and write it to
    `config_path` for the trial's worker to read."""
    composed.run.run_dir = composed.tree.run_dir = str(run_dir)
    composed.run.wandb.group = composed.tree.wandb.group = group
    tags = [
        f"method:{composed.plugins['method'].name}",
        f"task:{composed.plugins['task'].name}",
        f"seed:{composed.run.seed}",
        *extra_tags,
    ]
    merged = [*composed.run.wandb.tags, *(t for t in tags if t not in composed.run.wandb.tags)]
    composed.run.wandb.tags = merged
    composed.tree.wandb.tags = list(merged)
    config_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config_path, composed.to_yaml())


def tabulate(trials: Sequence[Trial], swept_keys: Sequence[str]) -> list[Table]:
    """One table per task (:func:`~twcore.orchestration.report.task_tables.report_tables`),
    with each configuration's training speed and budget (model updates) as further columns,
    and a note under a table whose rows trained with different budgets."""
    records = [
        RunRecord(Path(t.summary["run_dir"]), t.summary, t.swept)
        for t in trials
        if t.summary is not None
    ]
    tables = report_tables(records, swept_keys, extra_metrics=RUN_COLUMNS)
    for table in tables:
        note = budget_note(table)
        if note:
            table.notes.append(note)
    return tables


def budget_note(table: Table) -> str | None:
    """A sentence saying which rows made more model updates than others, or None if all rows
    had the same budget (methods whose step is a whole inner training, such as TaskMet, make
    many updates per step: a table at equal ``steps`` is then not at equal budgets)."""
    updates = {
        row: cells["model_updates"].mean
        for row, cells in table.rows.items()
        if cells["model_updates"].values
    }
    if len(set(updates.values())) < 2:
        return None
    listed = ", ".join(
        f"{' '.join(row)}: {value:,.0f}"
        for row, value in sorted(updates.items(), key=itemgetter(1))
    )
    return (
        f"Budgets differ: mean model updates (optimiser steps on the model) per run are {listed}; "
        "compare rows at equal updates or equal wall time, not equal steps."
    )


def write_results(result: SweepResult) -> None:
    """``results.md`` (tables + failures) and ``results.json`` (tables + trial statuses)."""
    markdown = "\n".join(table.to_markdown() for table in result.tables)
    if result.failed:
        markdown += (
            "\nFailed or diverged trials:\n\n"
            + "\n".join(f"- {t.name}: {t.status}: {t.error}" for t in result.failed)
            + "\n"
        )
    atomic_write_text(result.sweep_dir / "results.md", markdown)
    payload = {
        "tables": [{"title": t.title, "rows": t.to_records()} for t in result.tables],
        "trials": [
            {
                "name": t.name,
                "swept": t.swept,
                "status": t.status,
                "error": t.error,
                "attempts": t.attempts,
                "run_dir": (t.summary or {}).get("run_dir"),
            }
            for t in result.trials
        ],
    }
    atomic_write_text(result.sweep_dir / "results.json", json.dumps(payload, indent=2))


def _sweep_dir(composed: ComposedConfig, label: str) -> Path:
    if composed.run.run_dir:
        path = Path(composed.run.run_dir)
    else:
        path = Path(composed.run.runs_root) / f"{label}-{time.strftime('%Y%m%d-%H%M%S')}"
        suffix = 1
        base = path
        while path.exists():
            suffix += 1
            path = base.with_name(f"{base.name}-{suffix}")
    path.mkdir(parents=True, exist_ok=True)
    return path
