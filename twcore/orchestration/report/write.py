"""Writing ``report.md``, its figures and a W&B summary run for one or more sweep directories."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from twcore.orchestration.config.schema import WandbConfig
from twcore.orchestration.console import warn
from twcore.orchestration.registry import get_registry
from twcore.orchestration.report.collect import RunRecord, collect_runs
from twcore.orchestration.report.plots import FigureStyle, draw_report_figures, safe_name
from twcore.orchestration.report.table import REPORT_RUN_COLUMNS, Table
from twcore.orchestration.report.task_tables import (
    figure_label,
    is_labelled,
    keys_merged_in_rows,
    report_tables,
    row_keys,
)
from twcore.orchestration.report.workspace import workspace_layout, workspace_markdown

REPORT_FILE = "report.md"
WORKSPACE_FILE = "workspace.md"


@dataclass
class Report:
    """Where the report went and what it holds."""

    path: Path
    tables: list[Table]
    images: list[Path] = field(default_factory=list)
    wandb_run: str | None = None


def write_report(
    sweep_dirs: Sequence[str | Path],
    *,
    out_dir: str | Path | None = None,
    title: str = "twcore report",
    wandb: bool = True,
    style: FigureStyle | None = None,
    plots: bool = True,
    wandb_dir: str | Path | None = None,
) -> Report:
    """Aggregate the completed runs of `sweep_dirs` into ``report.md``, ``report.json``,
    the W&B workspace definition (``workspace.md``/``workspace.json``) and figures
    (:mod:`~twcore.orchestration.report.plots`, in `style`'s formats and dpi) in
    `out_dir` (default: the first sweep directory), and log them to a W&B summary run (offline
    unless ``WANDB_MODE`` says otherwise; a W&B failure is a warning, the files are written
    anyway). `plots`: False writes no figures (and imports no matplotlib). `wandb_dir`: where
    that W&B run's files go (default `out_dir`; ``twcore reproduce`` keeps them with the runs
    when the report goes into a documentation folder)."""
    style = style or FigureStyle()
    records: list[RunRecord] = []
    swept: list[str] = []
    for sweep_dir in sweep_dirs:
        found, keys = collect_runs(sweep_dir)
        records.extend(found)
        swept.extend(k for k in keys if k not in swept)
    swept.extend(k for k in keys_merged_in_rows(records, swept) if k not in swept)
    out = Path(out_dir) if out_dir is not None else Path(sweep_dirs[0])
    out.mkdir(parents=True, exist_ok=True)
    tables = report_tables(records, swept, extra_metrics=REPORT_RUN_COLUMNS)
    keys = row_keys(swept, labelled=is_labelled(records))
    images: list[Path] = []
    by_task: dict[str, dict[tuple[str, ...], list[RunRecord]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for record in records:
        by_task[record.task][figure_label(keys, record.label(keys))].append(record)
    lines = [f"# {title}", "", f"{len(records)} completed run(s) from: "]
    lines += [f"- `{d}`" for d in sweep_dirs] + [""]
    for table in tables:
        lines.append(table.to_markdown())
        task = table.title.split(" — ")[0]
        drawn_figures = (
            draw_report_figures(task, dict(by_task[task]), out, style, warn=warn) if plots else []
        )
        for kind, drawn in drawn_figures:
            images.append(drawn)
            lines += [f"![{task} {kind}]({drawn.name})", ""]
    path = out / REPORT_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    (out / "report.json").write_text(
        json.dumps(
            [
                {"title": t.title, "directions": t.directions, "rows": t.to_records()}
                for t in tables
            ],
            indent=2,
        ),
        encoding="utf-8",
    )
    layout = workspace_layout(records, swept, get_registry())
    (out / WORKSPACE_FILE).write_text(workspace_markdown(layout), encoding="utf-8")
    (out / "workspace.json").write_text(json.dumps(layout, indent=2), encoding="utf-8")
    report = Report(path, tables, images)
    if wandb:
        report.wandb_run = _log_to_wandb(
            report, records, out, Path(wandb_dir or out), png="png" in style.formats
        )
    return report


def _log_to_wandb(
    report: Report, records: Sequence[RunRecord], out: Path, run_dir: Path, *, png: bool
) -> str | None:
    """A W&B run (job type ``report``) with the tables and images, in the W&B project,
    entity, group and mode of the (first) sweep's runs."""
    try:
        import numpy as np
        from PIL import Image as PILImage

        from twcore.contract.media import Image
        from twcore.orchestration.tracking.wandb_backend import WandbBackend

        runs = records[0].summary["config"].get("wandb", {})
        backend = WandbBackend(
            WandbConfig(
                group=runs.get("group"),
                project=runs.get("project") or WandbConfig().project,
                entity=runs.get("entity"),
                mode=runs.get("mode"),
                job_type="report",
                name=f"report-{out.name}",
            ),
            run_dir=run_dir,
            resolved_config={"runs": [str(r.run_dir) for r in records]},
            run_name=f"report-{out.name}",
        )
        values = {}
        for table in report.tables:
            columns, rows = table.to_columns()
            values[f"table/{safe_name(table.title.split(' — ')[0])}"] = backend._wandb.Table(
                columns=columns, data=rows
            )
        for image in report.images if png else ():  # PDF/SVG-only reports log tables only
            raster = PILImage.open(image.with_suffix(".png")).convert("RGB")
            values[f"plot/{image.stem}"] = Image(np.asarray(raster))
        backend.log(values, step=0)
        backend.finish("completed")
        return str(backend.run.id)
    except Exception as exc:  # W&B down or misconfigured: the report files stand on their own
        warn(f"report: not logged to W&B ({type(exc).__name__}: {exc})")
        return None
