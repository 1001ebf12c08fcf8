"""The report's figures, drawn from the runs of each task grouped by row label.

- ``curve``: the primary metric on validation over steps, mean ± 1 sample std over seeds;
- ``main``: for main/auxiliary tasks, each row's test value of the
  primary metric, mean ± 1 sample std with every seed's value;
- ``average_vs_worst``: for peer multitask tasks, average against worst-case test metric, the
  trade-off a reader of a multitask paper looks for;
- ``weights``: the learned objective weights over training, a moving average over seeds with
  the raw mean faint behind it and ±1 sample std of the smoothed seeds as a band.

Every drawer returns a matplotlib figure, or None when the runs have nothing to draw (no
validation curve, no main objective, constant weights); :func:`write_figure` saves it in each
of the :class:`FigureStyle`'s formats. Legends carry each row's n and sit outside the axes, so
they never cover data. Spreads are the sample std (n − 1), as in the tables.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from twcore.contract.errors import UsageError
from twcore.orchestration.report.collect import RunRecord
from twcore.orchestration.report.curves import (
    moving_average,
    sample_std,
    seed_curve,
    smoothing_window,
    varies,
)

WORST_PAIRS = (("avg_acc", "worst_acc"), ("avg_loss", "worst_loss"))
FORMATS = ("png", "pdf", "svg")

Groups = dict[tuple[str, ...], list[RunRecord]]


@dataclass(frozen=True)
class FigureStyle:
    """How figures are written: the file formats (the first one is linked from the report)
    and the resolution of raster formats."""

    formats: tuple[str, ...] = ("png",)
    dpi: int = 150

    def __post_init__(self) -> None:
        if not self.formats:
            raise UsageError(f"--format: give at least one of {', '.join(FORMATS)}")
        for fmt in self.formats:
            if fmt not in FORMATS:
                raise UsageError(f"--format {fmt}: choose from {', '.join(FORMATS)}")
        if self.dpi < 10:
            raise UsageError(f"--dpi {self.dpi}: give at least 10")


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg (file-only) backend, imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_figure(figure: Any, path: Path, style: FigureStyle | None = None) -> Path:
    """Save `figure` as `path` in each of the style's formats (``path`` with or without a
    format's suffix; legends outside the axes are kept in the picture), free it, and return
    the first file."""
    style = style or FigureStyle()
    stem = path.with_suffix("") if path.suffix.lstrip(".") in FORMATS else path
    written = []
    try:
        for fmt in style.formats:
            target = stem.parent / f"{stem.name}.{fmt}"
            figure.savefig(target, dpi=style.dpi, bbox_inches="tight")
            written.append(target)
    finally:
        pyplot().close(figure)
    return written[0]


def save_figure(
    figure: Any,
    axis: Any,
    title: str,
    path: Path,
    *,
    x: str = "step",
    y: str = "",
    style: FigureStyle | None = None,
) -> Path:
    """Title and label the axis, then :func:`write_figure`."""
    axis.set_title(title)
    if x and not axis.get_xlabel():
        axis.set_xlabel(x)
    axis.set_ylabel(y or axis.get_ylabel())
    figure.tight_layout()
    return write_figure(figure, path, style)


def outside_legend(axis: Any, **options: Any) -> Any:
    """A legend to the right of the axes, where it cannot cover a curve or a marker."""
    return axis.legend(
        loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False, **options
    )


def direction_note(run: RunRecord, metric: str) -> str:
    """`` (higher is better)`` / `` (lower is better)`` as the task declared, else nothing."""
    declared = (run.summary["task"].get("metric_directions") or {}).get(metric)
    return {"max": " (higher is better)", "min": " (lower is better)"}.get(declared or "", "")


def _number(value: Any) -> float:
    """A summary value as a float (NaN when it is missing or not a number)."""
    return float(value) if isinstance(value, int | float) else math.nan


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def series_style(index: int) -> dict[str, str]:
    """Colour and marker of the `index`-th row in a figure: the ten default colours, then the
    same colours with the next marker, so more than ten rows stay distinguishable."""
    return {"color": f"C{index % 10}", "marker": MARKERS[(index // 10) % len(MARKERS)]}


def row_name(label: tuple[str, ...], n: int) -> str:
    return f"{' '.join(label)} (n={n})"


def metric_over_steps(task: str, groups: Groups) -> Any | None:
    """The task's primary metric on validation over steps: mean per row, band ±1 sample std."""
    some = next(iter(groups.values()))[0]
    metric = some.summary["task"]["primary_metric"]
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    drawn = False
    for index, (label, runs) in enumerate(groups.items()):
        curve = seed_curve([r.log for r in runs], f"val/{metric}")
        if curve is None or len(curve.steps) < 2:  # one evaluation (the final one) is no curve
            continue
        (line,) = axis.plot(
            curve.steps, curve.mean, markersize=3, label=row_name(label, curve.n),
            **series_style(index),
        )  # fmt: skip
        axis.fill_between(
            curve.steps, curve.mean - curve.std, curve.mean + curve.std, alpha=0.2, lw=0,
            color=line.get_color(),
        )  # fmt: skip
        drawn = True
    if not drawn:
        plt.close(figure)
        return None
    axis.set_title(f"{task}: validation {metric}, mean ± 1 sample std over seeds")
    axis.set_xlabel("step")
    axis.set_ylabel(metric + direction_note(some, metric))
    outside_legend(axis, fontsize=8)
    return figure


def main_metric(task: str, groups: Groups) -> Any | None:
    """For a main/auxiliary task: each row's test primary metric (validation if no test),
    mean ± 1 sample std, every seed's value as a faint dot."""
    some = next(iter(groups.values()))[0]
    roles = [o.get("role") for o in some.summary["task"].get("objectives", [])]
    if "main" not in roles or "auxiliary" not in roles:
        return None  # single-objective tasks: the curve and the table say it all
    metric = some.summary["task"]["primary_metric"]
    split = "test" if "test" in some.summary["metrics"] else "val"
    rows = []
    for label, runs in groups.items():
        values = np.array([_number(r.summary["metrics"].get(split, {}).get(metric)) for r in runs])
        finite = values[np.isfinite(values)]
        if len(finite):
            rows.append((label, finite))
    if not rows:
        return None
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 0.45 * len(rows) + 1.6))
    for position, (_, values) in enumerate(rows):
        axis.scatter(values, [position] * len(values), color="0.6", s=12, zorder=2)
        axis.errorbar(
            values.mean(), position, xerr=sample_std(values[:, None])[0], fmt="o", capsize=4,
            color="C0", zorder=3,
        )  # fmt: skip
    axis.set_yticks(range(len(rows)), [row_name(label, len(v)) for label, v in rows])
    axis.invert_yaxis()
    axis.set_title(f"{task}: {split} {metric} of the main task, mean ± 1 sample std (dots: seeds)")
    axis.set_xlabel(f"{split} {metric}{direction_note(some, metric)}")
    axis.grid(axis="x", alpha=0.3)
    return figure


def average_vs_worst(task: str, groups: Groups) -> Any | None:
    """For a peer multitask task: average against worst-case test metric per row, ±1 sample std
    bars, rows named in a legend."""
    some = next(iter(groups.values()))[0]
    objectives = some.summary["task"].get("objectives", [])
    if len(objectives) < 2 or any(o.get("role") == "main" for o in objectives):
        return None  # one objective: the same number; a main objective: see main_metric
    test = some.summary["metrics"].get("test", {})
    pair = next((p for p in WORST_PAIRS if p[0] in test and p[1] in test), None)
    if pair is None:
        return None
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4.5))
    drawn = False
    for index, (label, runs) in enumerate(groups.items()):
        tests = [r.summary["metrics"].get("test", {}) for r in runs]
        values = np.array([[_number(t.get(m)) for m in pair] for t in tests], dtype=float)
        values = values[np.isfinite(values).all(axis=1)].reshape(-1, 2)
        if not len(values):
            continue
        drawn = True
        mean, std = values.mean(axis=0), sample_std(values)
        style = series_style(index)
        axis.errorbar(
            mean[0], mean[1], xerr=std[0], yerr=std[1], fmt=style["marker"], capsize=3,
            color=style["color"], label=row_name(label, len(values)),
        )  # fmt: skip
    if not drawn:
        plt.close(figure)
        return None
    axis.set_title(f"{task}: average against worst case (test, mean ± 1 sample std)")
    axis.set_xlabel(f"test {pair[0]}{direction_note(some, pair[0])}")
    axis.set_ylabel(f"test {pair[1]}{direction_note(some, pair[1])}")
    outside_legend(axis, fontsize=8)
    return figure


def learned_weights(task: str, groups: Groups) -> Any | None:
    """``train/weight/<objective>`` over steps, one panel per row that learned weights (a
    constant weighting such as ew is left out): a moving average of the seeds' mean, the raw
    mean faint behind it, and ±1 sample std of the smoothed seeds as a band."""
    some = next(iter(groups.values()))[0]
    order = [o.get("name") for o in some.summary["task"].get("objectives", [])]
    rank = {f"train/weight/{name}": index for index, name in enumerate(order)}
    panels = {}
    for label, runs in groups.items():
        logs = [r.log for r in runs]
        found = {k for log in logs for r in log for k in r if k.startswith("train/weight/")}
        keys = sorted(found, key=lambda k: (rank.get(k, len(rank)), k))  # the task's order
        curves = {key.removeprefix("train/weight/"): seed_curve(logs, key) for key in keys}
        kept = {name: c for name, c in curves.items() if c is not None and len(c.steps)}
        if any(varies(c.values) for c in kept.values()):
            panels[label] = kept
    if not panels:
        return None
    plt = pyplot()
    figure, axes = plt.subplots(
        1, len(panels), figsize=(4.5 * len(panels) + 1.5, 3.6), squeeze=False, sharey=True
    )
    objectives = list(dict.fromkeys(name for curves in panels.values() for name in curves))
    colors = {name: f"C{index % 10}" for index, name in enumerate(objectives)}
    windows = set()
    for axis, (label, curves) in zip(axes[0], panels.items(), strict=True):
        for objective, curve in curves.items():
            window = smoothing_window(len(curve.steps))
            windows.add(window)
            smoothed = moving_average(curve.values, window)
            mean, std = smoothed.mean(axis=0), sample_std(smoothed)
            color = colors[objective]
            axis.plot(curve.steps, curve.mean, color=color, alpha=0.25, lw=0.7)
            axis.plot(curve.steps, mean, color=color, lw=1.6)
            axis.fill_between(curve.steps, mean - std, mean + std, color=color, alpha=0.15, lw=0)
        n = max(c.n for c in curves.values())
        axis.set_title(row_name(label, n), fontsize=9)
        axis.set_xlabel("step")
    axes[0][0].set_ylabel("objective weight")
    handles = [pyplot().Line2D([], [], color=colors[name], lw=1.6) for name in objectives]
    axes[0][-1].legend(
        handles, objectives, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
        frameon=False, fontsize=8, title="objective",
    )  # fmt: skip
    smoothing = ", ".join(str(w) for w in sorted(windows))
    figure.suptitle(
        f"{task}: learned weights — moving average over {smoothing} logged step(s) (raw mean "
        "faint), band ±1 sample std over seeds",
        fontsize=9,
    )
    figure.tight_layout()
    return figure


Drawer = Callable[[str, Groups], Any]

PLOTS: dict[str, Drawer] = {
    "curve": metric_over_steps,
    "main": main_metric,
    "average_vs_worst": average_vs_worst,
    "weights": learned_weights,
}


def draw_report_figures(
    task: str, groups: Groups, out: Path, style: FigureStyle, *, warn: Callable[[str], None]
) -> list[tuple[str, Path]]:
    """Every figure of `task` written under `out` as ``<task>_<kind>.<format>``: (kind, first
    file) pairs. A figure that fails is a warning; it never costs the others or the tables."""
    drawn = []
    plt = pyplot()
    for kind, draw in PLOTS.items():
        name = f"{safe_name(task)}_{kind}"
        open_before = set(plt.get_fignums())
        try:
            figure = draw(task, groups)
            if figure is not None:
                drawn.append((kind, write_figure(figure, out / name, style)))
        except Exception as exc:
            for number in set(plt.get_fignums()) - open_before:  # a half-drawn figure
                plt.close(number)
            warn(f"report: cannot draw {name}: {type(exc).__name__}: {exc}")
    return drawn


def safe_name(text: str) -> str:
    """`text` usable as a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")
