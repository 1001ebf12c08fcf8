"""Mean ± std tables over seeds, one per task, best value of each column marked."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from twcore.orchestration.report.collect import RunRecord, differing_keys
from twcore.orchestration.report.table import Table, summary_metrics

NOT_ROWS = ("seed", "task")


def row_keys(swept: Sequence[str], *, labelled: bool = False) -> list[str]:
    """The keys that label rows: ``label`` when runs set one, then what the sweeps varied
    except seed and task (``method`` if nothing else; with labels, ``method`` only where a
    labelled sweep varied it, since a label usually names its method)."""
    if labelled:
        return ["label", *(k for k in swept if k not in (*NOT_ROWS, "label"))]
    return [k for k in swept if k not in NOT_ROWS] or ["method"]


NAMED_BY_VALUE = ("label", "method")
"""Row keys whose values name themselves in a figure's legend (a label, a method's name)."""


def figure_label(keys: Sequence[str], row: tuple[str, ...]) -> tuple[str, ...]:
    """A row's name in figures: ``optim.lr=0.001``, not a bare ``0.001`` (a table has the key in
    its header; a legend does not), with labels and method names as they are."""
    return tuple(
        value if key in NAMED_BY_VALUE else f"{key}={value}"
        for key, value in zip(keys, row, strict=True)
    )


def keys_merged_in_rows(records: Sequence[RunRecord], swept: Sequence[str]) -> list[str]:
    """Config keys whose values differ between runs that would share a row (the same task and
    row label): runs of different sweeps, each of which held the key fixed at its own value
    (one grid's ``task.extra_dims=60`` beside another's default). As row keys they keep those
    configurations apart."""
    keys = row_keys(swept, labelled=is_labelled(records))
    rows: dict[tuple[str, tuple[str, ...]], list[RunRecord]] = defaultdict(list)
    for record in records:
        rows[(record.task, record.label(keys))].append(record)
    found: list[str] = []
    for runs in rows.values():
        found.extend(k for k in differing_keys(runs) if k not in (*NOT_ROWS, *found))
    return found


def is_labelled(records: Sequence[RunRecord]) -> bool:
    """Whether any run carries a ``label``."""
    return any(r.summary["config"].get("label") for r in records)


def report_tables(
    records: Sequence[RunRecord], swept: Sequence[str], *, extra_metrics: Sequence[str] = ()
) -> list[Table]:
    """One table per task over its summary metrics on test (validation if a run has no test
    split), plus `extra_metrics` from the summary (e.g. ``steps_per_s``, never marked best).
    Columns are ranked by the directions the task declared, recorded in each run's summary
    (merged over the task's runs; a column no run recorded a direction for is unranked, as in
    summaries written before directions were recorded)."""
    keys = row_keys(swept, labelled=is_labelled(records))
    tables: dict[str, Table] = {}
    for record in records:
        metrics_by_split = record.summary["metrics"]
        split = "test" if "test" in metrics_by_split else next(iter(metrics_by_split), "test")
        if record.task not in tables:
            seeds = len({r.seed for r in records if r.task == record.task})
            names = list(record.summary["task"]["summary_metrics"])
            title = f"{record.task} — {split} metrics, mean ± std over {seeds} seed(s)"
            tables[record.task] = Table(title, keys, [*names, *extra_metrics])
        table = tables[record.task]
        for metric, direction in (record.summary["task"].get("metric_directions") or {}).items():
            table.directions.setdefault(metric, direction)
        table.add(record.label(keys), summary_metrics(record.summary, split, table.metrics))
    return list(tables.values())
