"""The report's PNGs: a metric over steps with seed bands, average against worst case, and
learned objective weights over training. Each function returns None when the runs have
nothing to draw (no validation curve, no worst-case metric, no weights)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from twcore.orchestration.report.collect import RunRecord

WORST_PAIRS = (("avg_acc", "worst_acc"), ("avg_loss", "worst_loss"))


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg (file-only) backend, imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_metrics(run_dir: Path) -> list[dict]:
    """The run's ``metrics.jsonl`` records (an unreadable line is skipped)."""
    records = []
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def series(records: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one logged key."""
    pairs = [
        (r["step"], r[key])
        for r in records
        if isinstance(r.get(key), int | float) and math.isfinite(r[key])
    ]
    if not pairs:
        return np.array([]), np.array([])
    steps, values = zip(*pairs, strict=True)
    return np.array(steps), np.array(values, dtype=float)


def save_figure(figure, axis, title: str, path: Path, *, x: str = "step", y: str = "") -> Path:
    """Title and label the axis, write the PNG and free the figure."""
    axis.set_title(title)
    if x and not axis.get_xlabel():
        axis.set_xlabel(x)
    axis.set_ylabel(y or axis.get_ylabel())
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot().close(figure)
    return path


def metric_over_steps(
    task: str, groups: dict[tuple[str, ...], list[RunRecord]], path: Path
) -> Path | None:
    """The task's primary metric on validation over steps: mean per row, band = ±1 std."""
    some = next(iter(groups.values()))[0]
    metric = some.summary["task"]["primary_metric"]
    key = f"val/{metric}"
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    drawn = False
    for label, runs in groups.items():
        curves = [series(read_metrics(r.run_dir), key) for r in runs]
        curves = [c for c in curves if len(c[0])]
        if not curves:
            continue
        steps = sorted(set.intersection(*(set(c[0].tolist()) for c in curves)))
        if len(steps) < 2:  # one evaluation (the final one) is no curve
            continue
        values = np.array([[dict(zip(*c, strict=True))[s] for s in steps] for c in curves])
        mean, std = values.mean(axis=0), values.std(axis=0)
        axis.plot(steps, mean, marker="o", markersize=3, label=" ".join(label))
        axis.set_ylabel(metric)
        axis.fill_between(steps, mean - std, mean + std, alpha=0.2)
        drawn = True
    if not drawn:
        plt.close(figure)
        return None
    axis.legend(fontsize=8)
    return save_figure(figure, axis, f"{task}: validation {metric} (mean ± std over seeds)", path)


def average_vs_worst(
    task: str, groups: dict[tuple[str, ...], list[RunRecord]], path: Path
) -> Path | None:
    """Average against worst-case test metric per row (multitask tasks), ±1 std bars."""
    some = next(iter(groups.values()))[0]
    if len(some.summary["task"].get("objectives", [])) < 2:
        return None  # one objective: average and worst case are the same number
    test = some.summary["metrics"].get("test", {})
    pair = next((p for p in WORST_PAIRS if p[0] in test and p[1] in test), None)
    if pair is None:
        return None
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5, 4))
    for label, runs in groups.items():
        values = np.array(
            [[r.summary["metrics"]["test"][m] for m in pair] for r in runs], dtype=float
        )
        mean, std = values.mean(axis=0), values.std(axis=0)
        axis.errorbar(mean[0], mean[1], xerr=std[0], yerr=std[1], fmt="o", capsize=3)
        axis.annotate(" ".join(label), (mean[0], mean[1]), fontsize=8)
    axis.set_xlabel(f"test {pair[0]}")
    return save_figure(
        figure, axis, f"{task}: average against worst case", path, y=f"test {pair[1]}"
    )


def learned_weights(
    task: str, groups: dict[tuple[str, ...], list[RunRecord]], path: Path
) -> Path | None:
    """``train/weight/<objective>`` over steps, mean over seeds, one panel per row that
    learned weights (a constant weighting such as ew is left out)."""
    panels = {}
    for label, runs in groups.items():
        by_key: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
        for run in runs:
            records = read_metrics(run.run_dir)
            keys = sorted({k for r in records for k in r if k.startswith("train/weight/")})
            for key in keys:
                by_key[key].append(series(records, key))
        curves = {}
        for key, runs_series in by_key.items():
            length = min(len(s[0]) for s in runs_series)
            if length == 0:
                continue
            values = np.array([s[1][:length] for s in runs_series]).mean(axis=0)
            curves[key.removeprefix("train/weight/")] = (runs_series[0][0][:length], values)
        if any(np.ptp(values) > 1e-9 for _, values in curves.values()):
            panels[label] = curves
    if not panels:
        return None
    plt = pyplot()
    figure, axes = plt.subplots(
        1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False, sharey=True
    )
    for axis, (label, curves) in zip(axes[0], panels.items(), strict=True):
        for objective, (steps, values) in curves.items():
            axis.plot(steps, values, label=objective)
        axis.set_title(f"{task}: {' '.join(label)} weights")
        axis.set_xlabel("step")
        axis.legend(fontsize=7)
    axes[0][0].set_ylabel("weight (mean over seeds)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


PLOTS = {
    "curve": metric_over_steps,
    "average_vs_worst": average_vs_worst,
    "weights": learned_weights,
}
