"""Aggregating run summaries into tables: mean ± sample std over seeds with n, the best value of
each column marked in the direction its task declares."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twcore.orchestration.report.curves import sample_std

RUN_COLUMNS = ("steps_per_s", "model_updates")
"""Numbers of ``summary.json`` that describe how a run trained (speed, budget), not how well:
they have no direction, so a table never marks one best."""

MS_PER_STEP = "ms_per_step"
"""Training milliseconds per step (1000 / ``steps_per_s``; evaluation excluded), derived."""

REPORT_RUN_COLUMNS = (MS_PER_STEP, "model_updates")
"""The run columns of a report's tables: time per step and the model updates it bought (a
step of a bilevel method is many model updates)."""


@dataclass
class Cell:
    """Values of one metric over the seeds of one row."""

    values: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation (n − 1), as the figures' bands; 0 for a single value."""
        return float(sample_std(np.array(self.values, dtype=float))) if self.values else 0.0

    def format(self, digits: int = 4) -> str:
        if not self.values:
            return "–"
        if len(self.values) == 1:
            return f"{self.mean:.{digits}g}"
        return f"{self.mean:.{digits}g} ± {self.std:.2g}"


@dataclass
class Table:
    """Rows (labelled by the values of the grouping keys) × metric columns."""

    title: str
    row_keys: list[str]
    metrics: list[str]
    rows: dict[tuple[str, ...], dict[str, Cell]] = field(default_factory=dict)
    counts: dict[tuple[str, ...], int] = field(default_factory=dict)
    directions: dict[str, str] = field(default_factory=dict)
    """Each column's direction (``max``/``min``/``none``, from the task's
    ``metric_directions``): a column without one, or ``none``, is never marked best."""
    notes: list[str] = field(default_factory=list)
    """Sentences printed under the table (e.g. that the rows trained with different budgets)."""

    def add(self, row: tuple[str, ...], metrics: dict[str, float | None]) -> None:
        cells = self.rows.setdefault(row, {m: Cell() for m in self.metrics})
        self.counts[row] = self.counts.get(row, 0) + 1
        for metric in self.metrics:
            value = metrics.get(metric)
            if isinstance(value, int | float) and math.isfinite(value):
                cells[metric].values.append(float(value))

    def best_rows(self) -> dict[str, tuple[str, ...] | None]:
        """For each metric, the row with the best mean (None if no row has a value)."""
        best: dict[str, tuple[str, ...] | None] = {}
        for metric in self.metrics:
            direction = self.directions.get(metric)
            if direction not in ("max", "min"):
                best[metric] = None
                continue
            scored = [
                (cells[metric].mean, row)
                for row, cells in self.rows.items()
                if cells[metric].values
            ]
            if not scored:
                best[metric] = None
                continue
            pick = max if direction == "max" else min
            best[metric] = pick(scored, key=lambda pair: pair[0])[1]
        return best

    def to_markdown(self, *, mark_best: bool = True, show_count: bool = True) -> str:
        """A Markdown table: mean ± sample std per cell, the row's number of runs in column
        ``n`` (a cell with fewer values says its own ``n=``), the best mean of each column with
        a direction in bold (if `mark_best`)."""
        best = self.best_rows() if mark_best and len(self.rows) > 1 else {}
        header = [*self.row_keys, *self.metrics] + (["n"] if show_count else [])
        lines = [
            f"**{self.title}**",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" for _ in header) + "|",
        ]
        for row, cells in self.rows.items():
            formatted = []
            for metric in self.metrics:
                cell = cells[metric]
                text = cell.format()
                if show_count and cell.values and len(cell.values) != self.counts[row]:
                    text += f" (n={len(cell.values)})"
                formatted.append(f"**{text}**" if best.get(metric) == row else text)
            count = [str(self.counts[row])] if show_count else []
            lines.append("| " + " | ".join([*row, *formatted, *count]) + " |")
        if self.notes:
            lines.extend(["", *self.notes])
        return "\n".join(lines) + "\n"

    def to_records(self) -> list[dict[str, Any]]:
        """Rows as dicts: the grouping keys, ``n`` (runs in the row), then ``{metric: {mean,
        std, n, values}}`` (std is the sample std, null below two values)."""
        records = []
        for row, cells in self.rows.items():
            record: dict[str, Any] = dict(zip(self.row_keys, row, strict=True))
            record["n"] = self.counts[row]
            for metric in self.metrics:
                cell = cells[metric]
                record[metric] = {
                    "mean": cell.mean if cell.values else None,
                    "std": cell.std if len(cell.values) > 1 else None,
                    "n": len(cell.values),
                    "values": cell.values,
                }
            records.append(record)
        return records

    def to_columns(self) -> tuple[list[str], list[list[Any]]]:
        """Flat columns and rows for a W&B table: the grouping keys, then per metric its mean,
        ``<metric> std`` and ``<metric> n``, then the row's ``n``."""
        columns = list(self.row_keys)
        for metric in self.metrics:
            columns += [metric, f"{metric} std", f"{metric} n"]
        columns.append("n")
        rows = []
        for record in self.to_records():
            values: list[Any] = [record[key] for key in self.row_keys]
            for metric in self.metrics:
                values += [record[metric][part] for part in ("mean", "std", "n")]
            rows.append([*values, record["n"]])
        return columns, rows


def summary_metrics(
    summary: dict[str, Any], split: str, metrics: Sequence[str]
) -> dict[str, float | None]:
    """The named metrics of one split of a ``summary.json`` (plus the run-level
    :data:`RUN_COLUMNS` and :data:`MS_PER_STEP`)."""
    values = dict(summary.get("metrics", {}).get(split, {}))
    for column in RUN_COLUMNS:
        values[column] = summary.get(column)
    rate = summary.get("steps_per_s")
    values[MS_PER_STEP] = 1000.0 / rate if rate else None
    return {metric: values.get(metric) for metric in metrics}
