"""Running the cartesian product of ``key=a,b,c`` overrides and tabulating the results.

Every trial is composed (and so validated) before the first one starts, so a typo in any
combination fails fast. Trials run one after another in this process, each in its own run
directory under the sweep directory and its own W&B run in the sweep's W&B group.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twcore.api import run_composed
from twcore.config.compose import ComposedConfig, compose
from twcore.config.overrides import Override, parse_override, split_sweep
from twcore.console import info, warn
from twcore.errors import DivergenceError, UsageError
from twcore.registry import PluginRegistry
from twcore.results import Table, summary_metrics

SEED_KEY = "seed"


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


@dataclass
class SweepResult:
    """The sweep directory, the trials and the tables built from their summaries."""

    sweep_dir: Path
    trials: list[Trial]
    tables: list[Table] = field(default_factory=list)

    @property
    def failed(self) -> list[Trial]:
        """Trials that ran but did not complete (diverged, failed, interrupted)."""
        return [t for t in self.trials if t.status not in ("completed", "pending")]

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
            swept_keys.append(override.key)
        choices.append([Override(override.key, value) for value in values])
    return swept_keys, [list(combo) for combo in itertools.product(*choices)]


def trial_name(swept: dict[str, str]) -> str:
    """A directory-safe name such as ``method-ew_seed-0``."""
    if not swept:
        return "trial"
    parts = [f"{key.split('.')[-1]}-{value}" for key, value in swept.items()]
    return re.sub(r"[^A-Za-z0-9_.=-]+", "", "_".join(parts))[:120]


def plan(
    arguments: Sequence[str],
    *,
    config_file: str | Path | None = None,
    registry: PluginRegistry | None = None,
) -> tuple[list[str], list[Trial]]:
    """Expand and compose every trial (UsageError on the first invalid combination)."""
    swept_keys, combos = expand(arguments)
    trials = []
    for combo in combos:
        swept = {o.key: o.text for o in combo if o.key in swept_keys}
        trial = Trial(trial_name(swept), combo, swept)
        try:
            trial.composed = compose(combo, config_file=config_file, registry=registry)
        except UsageError as exc:
            where = f" (trial {', '.join(f'{k}={v}' for k, v in swept.items())})" if swept else ""
            raise type(exc)(f"{exc}{where}") from exc
        trials.append(trial)
    return swept_keys, trials


def run_sweep(
    arguments: Sequence[str],
    *,
    config_file: str | Path | None = None,
    registry: PluginRegistry | None = None,
    label: str = "sweep",
    show_progress: bool = False,
) -> SweepResult:
    """Run every combination and write ``results.md`` and ``results.json`` in the sweep dir."""
    swept_keys, trials = plan(arguments, config_file=config_file, registry=registry)
    first = trials[0].composed
    assert first is not None
    sweep_dir = _sweep_dir(first, label)
    group = first.run.wandb.group or sweep_dir.name
    info(f"{label}: {len(trials)} run(s) in {sweep_dir}")
    for index, trial in enumerate(trials, start=1):
        composed = trial.composed
        assert composed is not None
        composed.run.run_dir = str(sweep_dir / trial.name)
        composed.tree.run_dir = composed.run.run_dir
        composed.run.wandb.group = composed.tree.wandb.group = group
        described = ", ".join(f"{k}={v}" for k, v in trial.swept.items()) or "single run"
        info(f"[{index}/{len(trials)}] {described}")
        try:
            result = run_composed(composed, show_progress=show_progress)
            trial.summary, trial.status = result.summary, result.summary["status"]
            trial.error = result.summary.get("error")
        except KeyboardInterrupt:
            trial.status, trial.error = "interrupted", "interrupted by the user"
        except DivergenceError as exc:
            trial.status, trial.error = "diverged", str(exc)
            warn(f"{described}: {exc}")
        except UsageError as exc:
            trial.status, trial.error = "failed", str(exc)
            warn(f"{described}: {exc}")
        except Exception as exc:  # one broken trial must not lose the others
            trial.status, trial.error = "failed", f"{type(exc).__name__}: {exc}"
            warn(f"{described}: run failed: {trial.error}")
        if trial.status == "interrupted":
            warn(f"sweep stopped at trial {index} of {len(trials)}; completed trials are kept")
            break
    result = SweepResult(sweep_dir, trials, tabulate(trials, swept_keys))
    write_results(result)
    return result


def tabulate(trials: Sequence[Trial], swept_keys: Sequence[str]) -> list[Table]:
    """One table per task: rows grouped by the swept keys other than the seed, test metrics
    (validation metrics if a task has no test split) as mean ± std over seeds."""
    row_keys = [k for k in swept_keys if k != SEED_KEY and k != "task"] or ["method"]
    tables: dict[str, Table] = {}
    for trial in trials:
        if trial.summary is None or trial.composed is None:
            continue
        task_name = trial.composed.plugins["task"].name
        metrics_by_split = trial.summary["metrics"]
        split = "test" if "test" in metrics_by_split else next(iter(metrics_by_split), "test")
        if task_name not in tables:
            names = list(trial.summary["task"]["summary_metrics"])
            seeds = len({t.composed.run.seed for t in trials if t.composed is not None})
            title = f"{task_name} — {split} metrics, mean ± std over {seeds} seed(s)"
            tables[task_name] = Table(title, row_keys, [*names, "steps_per_s"])
        table = tables[task_name]
        row = tuple(_row_value(trial, key) for key in row_keys)
        table.add(row, summary_metrics(trial.summary, split, table.metrics))
    return list(tables.values())


def _row_value(trial: Trial, key: str) -> str:
    if key in trial.swept:
        return trial.swept[key]
    assert trial.composed is not None
    return str(trial.composed.to_dict().get(key, {}).get("name", ""))


def write_results(result: SweepResult) -> None:
    """``results.md`` (tables + failures) and ``results.json`` (tables + trial statuses)."""
    markdown = "\n".join(table.to_markdown() for table in result.tables)
    if result.failed:
        markdown += (
            "\nFailed or diverged trials:\n\n"
            + "\n".join(f"- {t.name}: {t.status}: {t.error}" for t in result.failed)
            + "\n"
        )
    (result.sweep_dir / "results.md").write_text(markdown, encoding="utf-8")
    payload = {
        "tables": [{"title": t.title, "rows": t.to_records()} for t in result.tables],
        "trials": [
            {
                "name": t.name,
                "swept": t.swept,
                "status": t.status,
                "error": t.error,
                "run_dir": (t.summary or {}).get("run_dir"),
            }
            for t in result.trials
        ],
    }
    (result.sweep_dir / "results.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")


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
