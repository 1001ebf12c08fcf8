"""``summary.json``: the machine-readable result of a run that scripts and tests rely on.

Shape (keys beyond these may be added, never removed)::

    {"config": {...}, "metrics": {"val": {NAME: number}, "test": {NAME: number}},
     "steps": int, "wall_time_s": float, "steps_per_s": float, "model_updates": int,
     "plugins": {NAME: VERSION}, "status": "completed"}

``model_updates`` counts the steps of the model's optimiser, which differ from ``steps`` for
methods whose step is a whole inner training (TaskMet: about 100 updates a step), so budgets can
be compared. ``status`` is ``running`` while training, then ``completed``, ``diverged`` (a
non-finite objective; ``error`` says where), ``early_stopped`` (finished by early stopping),
``interrupted`` (Ctrl-C/SIGTERM; resumable), ``stopped`` (by a callback; resumable) or
``failed`` (``error`` says what raised, and ``failure`` names the plugin, phase and step).
"""

from __future__ import annotations

import math
import platform
import time
from typing import TYPE_CHECKING, Any

from twcore.orchestration.config.compose import ComposedConfig
from twcore.version import __version__

if TYPE_CHECKING:  # reading summaries (reports, sweeps) needs no torch
    import torch

    from twcore.contract.task import Task

FINISHED_STATUSES = ("completed", "early_stopped")
"""Statuses of a run that trained to its end: its final metrics are results."""


def finished(status: object) -> bool:
    """Whether a run with `status` trained to its end (completed, or stopped early by design)."""
    return status in FINISHED_STATUSES


def plugin_versions(composed: ComposedConfig) -> dict[str, str]:
    """``{"twcore": v, <method>: v, <task>: v, <model>: v}``."""
    versions = {"twcore": __version__}
    for registration in composed.plugins.values():
        versions[registration.name] = registration.source.version or "unknown"
    return versions


def build_summary(
    *,
    composed: ComposedConfig,
    status: str,
    metrics: dict[str, dict[str, float]],
    steps: int,
    wall_time_s: float,
    steps_per_s: float,
    model_updates: int,
    run_dir: str,
    device: torch.device,
    task: Task,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary dict; non-finite numbers become null so the file stays strict JSON."""
    summary: dict[str, Any] = {
        "config": composed.to_dict(),
        "metrics": {split: _finite(values) for split, values in metrics.items()},
        "steps": steps,
        "wall_time_s": round(wall_time_s, 4),
        "steps_per_s": round(steps_per_s, 4),
        "model_updates": model_updates,
        "plugins": plugin_versions(composed),
        "status": status,
        "run_dir": run_dir,
        "device": str(device),
        "task": describe_task(task),
        "versions": {"python": platform.python_version(), "torch": _torch_version()},
        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    summary.update(extra or {})
    return summary


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


def describe_task(task: Task) -> dict[str, Any]:
    """What tables and reports need to know about the task: its metrics and their directions
    (``max``/``min``/``none``; null if the task does not declare them), and its objectives."""
    spec = task.spec
    directions = task.metric_directions
    return {
        "primary_metric": spec.primary_metric,
        "primary_mode": spec.primary_mode,
        "summary_metrics": list(spec.summary_metrics),
        "metric_directions": dict(directions) if directions is not None else None,
        "objectives": [
            {"name": o.name, "head": o.head, "kind": str(o.kind), "role": str(o.role)}
            for o in spec.objectives
        ],
        "capabilities": sorted(str(c) for c in spec.capabilities),
    }


def _finite(values: dict[str, float]) -> dict[str, float | None]:
    return {
        k: (v if isinstance(v, int | float) and math.isfinite(v) else None)
        for k, v in values.items()
    }
