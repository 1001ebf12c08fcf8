"""The W&B workspace of a sweep, as the exact panels to make: ``workspace.md`` and
``workspace.json``, written by ``twcore report``.

W&B's workspace and report API (the ``wandb-workspaces`` package) saves through a W&B server,
so it cannot write a workspace offline; this module writes its definition instead, from what
the runs logged and what each method plugin declares (:attr:`~twcore.contract.method.Method.
panels`): which runs to show (the sweeps' W&B groups), how to group them (by ``label``, else by
the keys the sweeps varied, with a ±1 std band over seeds), and one section per task (primary
metric, test metrics, learned weights) and per method.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

from twcore.orchestration.registry import PluginRegistry
from twcore.orchestration.report.collect import PLUGIN_SECTIONS, RunRecord
from twcore.orchestration.report.curves import smoothing_window, varies
from twcore.orchestration.report.task_tables import is_labelled, row_keys

RUN_HEALTH = ("run/steps_per_s", "run/wall_time_s", "run/model_updates")
"""The run-level numbers each run's W&B summary holds."""


def workspace_layout(
    records: Sequence[RunRecord], swept: Sequence[str], registry: PluginRegistry
) -> dict[str, Any]:
    """The workspace of `records`: runs, grouping and sections of panels (see the module
    docstring). A method whose plugin is not installed here gets no method section."""
    first = records[0].summary["config"].get("wandb", {})
    groups = sorted(
        {str(g) for r in records if (g := r.summary["config"].get("wandb", {}).get("group"))}
    )
    keys = row_keys(swept, labelled=is_labelled(records))
    logs = {r.run_dir: r.log for r in records}
    logged = {
        run_dir: {k for row in rows for k in row if k != "step"} for run_dir, rows in logs.items()
    }
    sections = []
    for task in dict.fromkeys(r.task for r in records):
        runs = [r for r in records if r.task == task]
        sections.append(_task_section(task, runs, logged))
        learned, logged_steps = _learned_weights([logs[r.run_dir] for r in runs])
        if learned:
            smoothing = f"running average, {smoothing_window(logged_steps)} steps"
            panels = [
                _panel(k.removeprefix("train/weight/"), [k], "line", smoothing=smoothing)
                for k in learned
            ]
            sections.append({"name": f"{task}: learned weights", "panels": panels})
    for method in dict.fromkeys(r.method for r in records):
        runs = [r for r in records if r.method == method]
        section = _method_section(method, runs, logged, registry)
        if section is not None:
            sections.append(section)
    sections.append(
        {
            "name": "run health",
            "panels": [_panel(key, [key], "bar") for key in RUN_HEALTH],
        }
    )
    return {
        "project": first.get("project"),
        "entity": first.get("entity"),
        "filter": {"group": groups},
        "group_by": [_config_path(key) for key in keys],
        "band": "std dev",
        "sections": sections,
    }


def _task_section(task: str, runs: Sequence[RunRecord], logged: dict[Any, set[str]]) -> dict:
    summary = runs[0].summary["task"]
    primary = summary["primary_metric"]
    directions = summary.get("metric_directions") or {}
    panels = [
        _panel(f"validation {primary}", [f"val/{primary}"], "line"),
        _panel(f"best validation {primary}", [f"best/val/{primary}"], "bar"),
    ]
    split = "test" if any(k.startswith("test/") for r in runs for k in logged[r.run_dir]) else "val"
    for metric in summary["summary_metrics"]:
        direction = {"max": "higher is better", "min": "lower is better"}.get(
            directions.get(metric, ""), "reported, not scored"
        )
        panels.append(_panel(f"{split} {metric} ({direction})", [f"{split}/{metric}"], "bar"))
    return {"name": f"{task}: primary and {split} metrics", "panels": panels}


def _method_section(
    method: str,
    runs: Sequence[RunRecord],
    logged: dict[Any, set[str]],
    registry: PluginRegistry,
) -> dict | None:
    try:
        declared = registry.get("method", method).cls.panels
    except Exception:  # not installed here: its runs still get the task sections
        return None
    if not declared:
        return None
    seen = set().union(*(logged[r.run_dir] for r in runs))
    panels = []
    for panel in declared:
        found = sorted(k for k in seen if any(fnmatch.fnmatchcase(k, p) for p in panel.keys))
        media = panel.kind == "media"  # images are not in metrics.jsonl: trust the declaration
        panels.append(
            {
                **_panel(panel.title, list(panel.keys), panel.kind),
                "note": panel.note,
                "logged": found if not media else None,
            }
        )
    return {"name": f"method: {method}", "panels": panels}


def _panel(title: str, keys: list[str], kind: str, *, smoothing: str | None = None) -> dict:
    return {"title": title, "kind": kind, "keys": keys, "smoothing": smoothing}


def _config_path(key: str) -> str:
    """The W&B config path of a report key (a plugin section groups by its name)."""
    return f"config.{key}.name" if key in PLUGIN_SECTIONS else f"config.{key}"


def _learned_weights(logs: Sequence[Sequence[dict]]) -> tuple[list[str], int]:
    """The ``train/weight/*`` keys that vary in some run (a constant weighting has no panel),
    and the most steps at which a run logged weights (the smoothing window is the figures')."""
    varying: set[str] = set()
    steps = 0
    for rows in logs:
        values: dict[str, list[float]] = {}
        logged = 0
        for row in rows:
            weights = {k: v for k, v in row.items() if k.startswith("train/weight/")}
            logged += bool(weights)
            for key, value in weights.items():
                if isinstance(value, int | float):
                    values.setdefault(key, []).append(float(value))
        varying |= {key for key, seen in values.items() if varies(seen)}
        steps = max(steps, logged)
    return sorted(varying), steps


def workspace_markdown(layout: dict[str, Any]) -> str:
    """The layout as the steps to make it in the W&B UI."""
    groups = layout["filter"]["group"]
    runs = (
        f"filter *Group* is one of {', '.join(f'`{g}`' for g in groups)}."
        if groups
        else "these runs have no W&B group (`wandb.group`); filter them by name or tag, "
        "or give the next sweep a group."
    )
    grouping = ", ".join(f"`{k}`" for k in layout["group_by"])
    lines = [
        "# W&B workspace for these runs",
        "",
        f"Project `{layout['project']}`"
        + (f", entity `{layout['entity']}`" if layout["entity"] else "")
        + ". Make it once in the W&B UI (W&B's workspace API needs a server, so twcore writes",
        "the definition; `workspace.json` holds the same for a script).",
        "",
        f"1. **Runs:** {runs}",
        f"2. **Grouping:** group runs by {grouping}; in every line panel turn *Grouping* on with",
        "   aggregation *Mean* and range *Std Dev* (the band over seeds).",
        "3. **Sections and panels**, in order (line: a key over steps; bar: its summary value per",
        "   group; media: the logged images on a step slider; chart: a custom chart as logged):",
        "",
    ]
    for section in layout["sections"]:
        lines.append(f"### {section['name']}")
        lines.append("")
        for panel in section["panels"]:
            keys = ", ".join(f"`{k}`" for k in panel["keys"])
            extra = f"; smoothing: {panel['smoothing']}" if panel.get("smoothing") else ""
            note = f" — {panel['note']}" if panel.get("note") else ""
            if panel.get("logged") is not None:
                found = ", ".join(f"`{k}`" for k in panel["logged"][:6])
                more = f" and {len(panel['logged']) - 6} more" if len(panel["logged"]) > 6 else ""
                note += f" (logged: {found}{more})" if found else " (not logged by these runs)"
            lines.append(f"- **{panel['title']}** ({panel['kind']}): {keys}{extra}{note}")
        lines.append("")
    return "\n".join(lines)
