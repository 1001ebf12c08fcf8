"""Aggregating run summaries into tables: mean ± std over seeds, best value marked."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

LOWER_IS_BETTER_WORDS = ("loss", "mse", "error", "regret", "time")

RUN_COLUMNS = ("steps_per_s", "model_updates")
"""Numbers of ``summary.json`` that describe how a run trained (speed, budget), not how well."""


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of `metric` are better (losses, errors, times)."""
    parts = metric.split("/")[-2:]  # e.g. test/mse/reg0 -> mse, reg0
    return any(word in part for part in parts for word in LOWER_IS_BETTER_WORDS)


@dataclass
class Cell:
    """Values of one metric over the seeds of one row."""

    values: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation (n − 1); 0 for a single value."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

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
    unranked: tuple[str, ...] = ()
    """Columns that describe a run rather than score it (speed, budget): never marked best."""
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
            if metric in self.unranked:
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
            pick = min if lower_is_better(metric) else max
            best[metric] = pick(scored)[1]
        return best

    def to_markdown(self, *, mark_best: bool = True, show_count: bool = True) -> str:
        """A Markdown table; the best mean of each column is in bold (if `mark_best`)."""
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
                text = cells[metric].format()
                formatted.append(f"**{text}**" if best.get(metric) == row else text)
            count = [str(self.counts[row])] if show_count else []
            lines.append("| " + " | ".join([*row, *formatted, *count]) + " |")
        if self.notes:
            lines.extend(["", *self.notes])
        return "\n".join(lines) + "\n"

    def to_records(self) -> list[dict[str, Any]]:
        """Rows as dicts: the grouping keys, then ``{metric: {mean, std, n, values}}``."""
        records = []
        for row, cells in self.rows.items():
            record: dict[str, Any] = dict(zip(self.row_keys, row, strict=True))
            for metric in self.metrics:
                cell = cells[metric]
                record[metric] = {
                    "mean": cell.mean if cell.values else None,
                    "std": cell.std if cell.values else None,
                    "n": len(cell.values),
                    "values": cell.values,
                }
            records.append(record)
        return records


def summary_metrics(
    summary: dict[str, Any], split: str, metrics: Sequence[str]
) -> dict[str, float | None]:
    """The named metrics of one split of a ``summary.json`` (plus the run-level
    :data:`RUN_COLUMNS`)."""
    values = dict(summary.get("metrics", {}).get(split, {}))
    for column in RUN_COLUMNS:
        values[column] = summary.get(column)
    return {metric: values.get(metric) for metric in metrics}
