"""The tune report's PNGs, drawn from the study's trials with matplotlib.

Each function takes the study, its trial records, the objective (``max:NAME``) and the path,
and returns the path, or None when there is nothing to draw yet.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twcore.orchestration.report.plots import pyplot, save_figure
from twcore.orchestration.tune import study as studies
from twcore.orchestration.tune.records import TrialRecord

MIN_TRIALS_FOR_IMPORTANCE = 2


def _finished(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    return [r for r in records if r.value is not None and math.isfinite(r.value)]


def history(study: Any, records: Sequence[TrialRecord], objective: str, path: Path) -> Path | None:
    """Each completed trial's value by trial number, and the best value so far; pruned
    trials at their last reported (lead-seed) value."""
    done = _finished(records)
    if not done:
        return None
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    numbers = [r.number for r in done]
    values = [float(r.value or 0.0) for r in done]
    axis.scatter(numbers, values, label="trial", zorder=3)
    better = max if objective.startswith("max:") else min
    best_so_far = [better(values[: i + 1]) for i in range(len(values))]
    axis.step(numbers, best_so_far, where="post", color="C1", label="best so far")
    pruned = [
        (t.number, t.intermediate_values[t.last_step])
        for t in study.get_trials(deepcopy=False)
        if t.state.name == "PRUNED" and t.last_step is not None and studies.counted(t)
    ]
    if pruned:
        axis.scatter(*zip(*pruned, strict=True), marker="x", color="C3", label="pruned (last)")
    axis.legend(fontsize=8)
    name = objective.split(":", 1)[1]
    return save_figure(figure, axis, f"optimisation history ({objective})", path, x="trial", y=name)


def intermediate(
    study: Any, records: Sequence[TrialRecord], objective: str, path: Path
) -> Path | None:
    """Every trial's lead-seed validation curve (what the pruner judged); pruned ones dashed."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    if not trials:
        return None
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    for trial in trials:
        steps = sorted(trial.intermediate_values)
        pruned = trial.state.name == "PRUNED"
        axis.plot(
            steps,
            [trial.intermediate_values[s] for s in steps],
            linestyle="--" if pruned else "-",
            color="C3" if pruned else "C0",
            alpha=0.7,
            marker="o",
            markersize=2,
        )
    name = objective.split(":", 1)[1]
    title = "validation curves (lead seed; dashed: pruned)"
    return save_figure(figure, axis, title, path, x="step", y=f"val {name}")


def importance(
    study: Any, records: Sequence[TrialRecord], objective: str, path: Path
) -> Path | None:
    """fANOVA importance of each searched parameter for the objective (Optuna's evaluator)."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    counted = [t for t in complete if studies.counted(t)]
    if len(counted) < MIN_TRIALS_FOR_IMPORTANCE:
        return None
    scores = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
    )
    if not scores:
        return None
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 1.2 + 0.5 * len(scores)))
    names = list(scores)[::-1]
    axis.barh(names, [scores[n] for n in names])
    return save_figure(figure, axis, "parameter importance (fANOVA)", path, x="importance", y="")


def slices(study: Any, records: Sequence[TrialRecord], objective: str, path: Path) -> Path | None:
    """The objective against each searched parameter, one panel per parameter."""
    done = _finished(records)
    keys = sorted({k for r in done for k in r.params})
    if not done or not keys:
        return None
    plt = pyplot()
    figure, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.5), squeeze=False)
    name = objective.split(":", 1)[1]
    for axis, key in zip(axes[0], keys, strict=True):
        points = [(r.params[key], float(r.value or 0.0)) for r in done if key in r.params]
        xs = [p[0] for p in points]
        numeric = all(isinstance(x, int | float) for x in xs)
        axis.scatter(xs if numeric else [str(x) for x in xs], [p[1] for p in points])
        if numeric and min(xs) > 0 and max(xs) / min(xs) > 100:
            axis.set_xscale("log")
        axis.set_xlabel(key)
        axis.set_ylabel(name)
    return save_figure(figure, axes[0][0], f"{name} against each parameter", path, x="", y=name)


PLOTS: dict[str, Callable[[Any, Sequence[Any], str, Path], Path | None]] = {
    "history": history,
    "intermediate": intermediate,
    "importance": importance,
    "slice": slices,
}
"""The report's plots by file name (``NAME.png``)."""
