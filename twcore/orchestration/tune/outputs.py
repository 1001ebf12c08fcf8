"""What a tune leaves: the best configuration and its command, the trials, plots and W&B.

In the tune directory:

- ``best/config.yaml``: the best trial's configuration, ready for ``twcore run --config``;
  ``best/command.txt`` the command that re-runs it over the study's seeds;
- ``trials.json`` and ``study.md``: every trial (state, parameters, aggregated and per-seed
  values, where it was pruned, its run directories) with the plots below;
- ``history.png`` (each trial's value and the best so far), ``intermediate.png`` (the lead
  seed's validation curve of every trial, pruned ones marked), ``importance.png`` (fANOVA
  parameter importances, from two finished trials on) and ``slice.png`` (value against each
  parameter);
- a W&B run (job type ``tune``) with the trials table and the plots.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twcore.contract.atomic_files import atomic_write_text
from twcore.orchestration.console import warn
from twcore.orchestration.tune import plots
from twcore.orchestration.tune import study as studies
from twcore.orchestration.tune.records import TrialRecord, TuneResult, TuneSetup

REPORT_FILE = "study.md"
"""The tune's report (not ``report.md``, which ``twcore report TUNE_DIR`` writes beside it)."""


def trial_records(study: Any) -> list[TrialRecord]:
    """The study's counted trials (void ones left out: their copies stand for them)."""
    records = []
    for trial in study.get_trials(deepcopy=False):
        if not studies.counted(trial):
            continue
        seed_values = trial.user_attrs.get(studies.SEED_VALUES, {})
        records.append(
            TrialRecord(
                number=trial.number,
                params=dict(trial.params),
                state=trial.state.name.lower(),
                value=trial.value if trial.state.name == "COMPLETE" else None,
                runs=studies.runs_of(trial),
                seed_values={int(k): v for k, v in seed_values.items()},
                pruned_at=trial.user_attrs.get(studies.PRUNED_AT),
                error=trial.user_attrs.get(studies.ERROR),
            )
        )
    return records


def best_record(records: Sequence[TrialRecord], objective: str) -> TrialRecord | None:
    """The completed trial with the best value (ties: the earliest)."""
    done = [r for r in records if r.state == "complete" and r.value is not None]
    if not done:
        return None
    sign = -1.0 if objective.startswith("max:") else 1.0
    return min(done, key=lambda r: (sign * float(r.value or 0.0), r.number))


def write_outputs(tuner: TuneSetup, *, wandb: bool = True) -> TuneResult:
    """Write every output of the module docstring; the result names them."""
    records = trial_records(tuner.study)
    best = best_record(records, tuner.objective)
    result = TuneResult(
        tune_dir=tuner.tune_dir,
        study_name=tuner.study_name,
        storage=tuner.storage,
        objective=tuner.objective,
        trials=records,
        best=best,
    )
    if best is not None:
        result.best_config, result.rerun_command = _write_best(tuner, best)
    atomic_write_text(tuner.tune_dir / "trials.json", json.dumps(_as_json(result), indent=2))
    images = _draw(tuner, records)
    result.report = _write_report(tuner, result, images)
    if wandb:
        _log_to_wandb(tuner, result, images)
    return result


def _write_best(tuner: TuneSetup, best: TrialRecord) -> tuple[Path, str]:
    composed = tuner.compose({k: _text(v) for k, v in best.params.items()}, tuner.seeds[0])
    path = tuner.tune_dir / "best" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, composed.reusable_yaml())
    if len(tuner.seeds) > 1:
        seeds = ",".join(str(s) for s in tuner.seeds)
        command = f"python3 -m twcore sweep --config {shlex.quote(str(path))} seed={seeds}"
    else:
        command = f"python3 -m twcore run --config {shlex.quote(str(path))}"
    atomic_write_text(path.parent / "command.txt", command + "\n")
    return path, command


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _as_json(result: TuneResult) -> dict[str, Any]:
    return {
        "study": result.study_name,
        "storage": result.storage,
        "objective": result.objective,
        "best": None if result.best is None else result.best.number,
        "best_config": None if result.best_config is None else str(result.best_config),
        "rerun_command": result.rerun_command,
        "trials": [
            {
                "number": r.number,
                "state": r.state,
                "value": r.value,
                "params": r.params,
                "seed_values": r.seed_values,
                "pruned_at": r.pruned_at,
                "runs": r.runs,
                "error": r.error,
            }
            for r in result.trials
        ],
    }


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return "—" if value is None else str(value)


def _write_report(tuner: TuneSetup, result: TuneResult, images: Sequence[Path]) -> Path:
    keys = list(tuner.space)
    metric = tuner.objective
    states = [r.state for r in result.trials]
    lines = [
        f"# tune: {result.study_name}",
        "",
        f"- objective: `{metric}` on validation, {tuner.aggregate} over seeds "
        f"{', '.join(map(str, tuner.seeds))}",
        "- space: " + ", ".join(f"`{k}={v}`" for k, v in tuner.space.items()),
        f"- sampler: {tuner.sampler}; pruner: {tuner.pruner}; study database: `{result.storage}`",
        f"- trials: {len(states)} ({states.count('complete')} complete, "
        f"{states.count('pruned')} pruned, {states.count('fail')} failed, "
        f"{states.count('running') + states.count('waiting')} unfinished)",
        "",
    ]
    if result.best is not None:
        lines += [
            f"**Best: trial {result.best.number}**, {metric} = {_format(result.best.value)}, "
            + ", ".join(f"`{k}={_format(v)}`" for k, v in result.best.params.items()),
            "",
            f"Configuration: `{result.best_config}`; re-run it with:",
            "",
            "```bash",
            str(result.rerun_command),
            "```",
            "",
        ]
    header = ["trial", "state", metric, *keys, "seeds", "pruned at", "runs"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for record in result.trials:
        seeds = ", ".join(f"{s}: {_format(v)}" for s, v in sorted(record.seed_values.items()))
        cells = [
            str(record.number),
            record.state,
            _format(record.value),
            *(_format(record.params.get(k)) for k in keys),
            seeds or "—",
            _format(record.pruned_at),
            f"`{record.runs}`",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"![{image.stem}]({image.name})\n" for image in images]
    path = tuner.tune_dir / REPORT_FILE
    atomic_write_text(path, "\n".join(lines))
    return path


def _draw(tuner: TuneSetup, records: Sequence[TrialRecord]) -> list[Path]:
    images = []
    for name, draw in plots.PLOTS.items():
        path = tuner.tune_dir / f"{name}.png"
        try:
            drawn = draw(tuner.study, records, tuner.objective, path)
        except Exception as exc:  # a plot must not cost the report
            warn(f"tune: cannot draw {path.name}: {type(exc).__name__}: {exc}")
            continue
        if drawn is not None:
            images.append(drawn)
    return images


def _log_to_wandb(tuner: TuneSetup, result: TuneResult, images: Sequence[Path]) -> None:
    """A W&B run (job type ``tune``, the trials' group) with the trials table, the best
    trial in its summary, and the plots; a W&B failure is a warning."""
    try:
        import numpy as np
        from PIL import Image as PILImage

        from twcore.contract.media import Image
        from twcore.orchestration.tracking.wandb_backend import WandbBackend

        name = f"tune-{tuner.tune_dir.name}"
        configured = tuner.wandb
        if not configured.enabled:
            return
        backend = WandbBackend(
            dataclasses.replace(
                configured,
                group=configured.group or tuner.tune_dir.name,
                job_type="tune",
                name=name,
                tags=[*configured.tags, f"tune:{tuner.study_name}"],
            ),
            run_dir=tuner.tune_dir,
            resolved_config={"study": result.study_name, **tuner.settings},
            run_name=name,
        )
        keys = list(tuner.space)
        rows = [
            [r.number, r.state, r.value, *(r.params.get(k) for k in keys)] for r in result.trials
        ]
        values: dict[str, Any] = {
            "tune/trials": backend._wandb.Table(
                columns=["trial", "state", tuner.objective, *keys], data=rows
            )
        }
        for image in images:
            values[f"tune/{image.stem}"] = Image(np.asarray(PILImage.open(image).convert("RGB")))
        if result.best is not None:
            values["tune/best_value"] = result.best.value
            values["tune/best_trial"] = result.best.number
        backend.log(values, step=0)
        backend.finish("completed")
    except Exception as exc:  # W&B down or misconfigured: the files stand on their own
        warn(f"tune: not logged to W&B ({type(exc).__name__}: {exc})")
