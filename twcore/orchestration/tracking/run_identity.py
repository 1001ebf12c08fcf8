"""What a tracked run is called and tagged, and where its code came from.

A W&B run is named ``[label/]method/task/s<seed>-<id>``: readable in a dashboard's run list, and
unique, because ``<id>`` is a short hash of the run directory (so two sweeps of the same
configuration differ, and a resumed run keeps its name). Its tags say the method, task, model,
seed and label, after the user's own. Where its code came from is
:mod:`~twcore.orchestration.tracking.provenance`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from twcore.orchestration.config.compose import ComposedConfig

ID_LENGTH = 6


def run_name(composed: ComposedConfig, run_dir: Path) -> str:
    """The configured ``wandb.name``, else ``[label/]method/task/s<seed>-<id>``."""
    if composed.run.wandb.name:
        return composed.run.wandb.name
    digest = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:ID_LENGTH]
    parts = [
        composed.plugins["method"].name,
        composed.plugins["task"].name,
        f"s{composed.run.seed}-{digest}",
    ]
    label = composed.run.label
    return "/".join([label, *parts] if label else parts)


def run_tags(composed: ComposedConfig) -> list[str]:
    """The user's ``wandb.tags``, then ``method:``, ``task:``, ``model:``, ``seed:`` and
    ``label:`` tags (each once)."""
    ours = [
        f"method:{composed.plugins['method'].name}",
        f"task:{composed.plugins['task'].name}",
        f"model:{composed.plugins['model'].name}",
        f"seed:{composed.run.seed}",
    ]
    if composed.run.label:
        ours.append(f"label:{composed.run.label}")
    tags = list(composed.run.wandb.tags)
    return [*tags, *(t for t in ours if t not in tags)]
