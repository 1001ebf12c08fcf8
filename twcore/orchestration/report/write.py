"""Writing ``report.md``, the PNGs and a W&B summary run for one or more sweep directories."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from twcore.orchestration.config.schema import WandbConfig
from twcore.orchestration.console import warn
from twcore.orchestration.report.collect import RunRecord, collect_runs
from twcore.orchestration.report.plots import PLOTS
from twcore.orchestration.report.table import Table
from twcore.orchestration.report.task_tables import is_labelled, report_tables, row_keys

REPORT_FILE = "report.md"


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
) -> Report:
    """Aggregate the completed runs of `sweep_dirs` into ``report.md`` + PNGs in `out_dir`
    (default: the first sweep directory), and log them to a W&B summary run (offline unless
    ``WANDB_MODE`` says otherwise; a W&B failure is a warning, the files are written anyway)."""
    records: list[RunRecord] = []
    swept: list[str] = []
    for sweep_dir in sweep_dirs:
        found, keys = collect_runs(sweep_dir)
        records.extend(found)
        swept.extend(k for k in keys if k not in swept)
    out = Path(out_dir) if out_dir is not None else Path(sweep_dirs[0])
    out.mkdir(parents=True, exist_ok=True)
    tables = report_tables(records, swept)
    keys = row_keys(swept, labelled=is_labelled(records))
    images: list[Path] = []
    by_task: dict[str, dict[tuple[str, ...], list[RunRecord]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for record in records:
        by_task[record.task][record.label(keys)].append(record)
    lines = [f"# {title}", "", f"{len(records)} completed run(s) from: "]
    lines += [f"- `{d}`" for d in sweep_dirs] + [""]
    for table in tables:
        lines.append(table.to_markdown())
        task = table.title.split(" — ")[0]
        for kind, plot in PLOTS.items():
            name = f"{_safe(task)}_{kind}.png"
            try:
                drawn = plot(task, dict(by_task[task]), out / name)
            except Exception as exc:  # a plot must not cost the tables
                warn(f"report: cannot draw {name}: {type(exc).__name__}: {exc}")
                drawn = None
            if drawn is not None:
                images.append(drawn)
                lines += [f"![{task} {kind}]({name})", ""]
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
    report = Report(path, tables, images)
    if wandb:
        report.wandb_run = _log_to_wandb(report, records, out)
    return report


def _log_to_wandb(report: Report, records: Sequence[RunRecord], out: Path) -> str | None:
    """A W&B run (job type ``report``, the sweep's group) with the tables and images."""
    try:
        import numpy as np
        from PIL import Image as PILImage

        from twcore.contract.media import Image
        from twcore.orchestration.tracking.wandb_backend import WandbBackend

        group = records[0].summary["config"].get("wandb", {}).get("group")
        backend = WandbBackend(
            WandbConfig(group=group, job_type="report", name=f"report-{out.name}"),
            run_dir=out,
            resolved_config={"runs": [str(r.run_dir) for r in records]},
            run_name=f"report-{out.name}",
        )
        values = {}
        for table in report.tables:
            columns, rows = table.to_columns()
            values[f"table/{_safe(table.title.split(' — ')[0])}"] = backend._wandb.Table(
                columns=columns, data=rows
            )
        for image in report.images:
            values[f"plot/{image.stem}"] = Image(np.asarray(PILImage.open(image).convert("RGB")))
        backend.log(values, step=0)
        backend.finish("completed")
        return str(backend.run.id)
    except Exception as exc:  # W&B down or misconfigured: the report files stand on their own
        warn(f"report: not logged to W&B ({type(exc).__name__}: {exc})")
        return None


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")
