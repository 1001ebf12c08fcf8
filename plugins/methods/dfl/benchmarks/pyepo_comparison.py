"""Our dfl-losses grid beside PyEPO's own published runs of the same settings, one table.

    python3 plugins/methods/dfl/benchmarks/pyepo_comparison.py

Reads the grid's report (``docs/report.json``, written by ``twcore reproduce --only dfl-losses``)
and PyEPO's per-run results (``docs/pyepo_published.json``: the rows of PyEPO's result files,
with their repository paths and commits), and writes ``docs/pyepo_comparison.md``: normalised
regret and MSE on the test split, mean ± sample std with the number of runs, for every method
both have. Every number in the table comes from those two files.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[1] / "docs"
GRID = "dfl-losses"
METRICS = ("normalised_regret", "mse")


def mean_std(values: list[float]) -> str:
    """``mean ± std (n)`` to three significant digits (std of one value: 0)."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3g} ± {spread:.2g} ({len(values)})"


def our_rows(report: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """task → method → row of the grid's report (labels ``dfl-losses/<method>``)."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for table in report:
        task = table["title"].split(" — ")[0]
        rows[task] = {row["label"].removeprefix(f"{GRID}/"): row for row in table["rows"]}
    return rows


def comparison(report: list[dict[str, Any]], published: dict[str, Any]) -> str:
    """The markdown: one table per task, a row per method PyEPO published."""
    ours = our_rows(report)
    lines = [
        "# dfl-losses beside PyEPO's published runs",
        "",
        "Test normalised regret (Σ regret ÷ Σ |optimal objective|) and MSE, mean ± sample std "
        "(runs). Ours: the report of `twcore reproduce --only dfl-losses` (its settings are "
        "the grid's: `twcore_method_dfl.grids`). PyEPO: the rows of its result files in "
        f"`{published['repository']}` (fresh data per run; the epochs and samples of each "
        "file in the last column). Written by "
        "`python3 plugins/methods/dfl/benchmarks/pyepo_comparison.py`.",
        "",
    ]
    for task, entry in published["tasks"].items():
        lines += [f"## {task}", "", f"PyEPO setting: {entry['setting']}.", ""]
        lines += [
            "| method | normalised regret (ours) | normalised regret (PyEPO) | MSE (ours) "
            "| MSE (PyEPO) | PyEPO's training |",
            "|---|---|---|---|---|---|",
        ]
        for method, theirs in entry["methods"].items():
            row = ours.get(task, {}).get(method)
            cells = []
            for metric in METRICS:
                mine = mean_std(row[metric]["values"]) if row else "not run"
                cells += [mine, mean_std(theirs[metric]) if metric in theirs else "not recorded"]
            lines.append(f"| {method} | {' | '.join(cells)} | {theirs['training']} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=DOCS, help="folder of the two inputs")
    parser.add_argument(
        "--out", type=Path, default=None, help="default: <docs>/pyepo_comparison.md"
    )
    options = parser.parse_args(argv)
    report = json.loads((options.docs / "report.json").read_text(encoding="utf-8"))
    published = json.loads((options.docs / "pyepo_published.json").read_text(encoding="utf-8"))
    text = comparison(report, published)
    out = options.out or options.docs / "pyepo_comparison.md"
    out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
