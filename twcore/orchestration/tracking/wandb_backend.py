"""Weights & Biases backend: one W&B run per twcore run, offline unless told otherwise."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from twcore.contract.media import Image, LinePlot
from twcore.orchestration.config.schema import WandbConfig
from twcore.orchestration.console import warn
from twcore.orchestration.tracking.wandb_offline import is_complete


def resolve_mode(config: WandbConfig) -> str:
    """The W&B mode: the config's, else ``$WANDB_MODE``, else ``offline``."""
    return config.mode or os.environ.get("WANDB_MODE") or "offline"


class WandbBackend:
    """Logs to a W&B run whose files live in ``<run_dir>/wandb``.

    With `primary` (``(metric, "max"|"min")``) the run's summary holds the best validation
    value of that metric (W&B's ``define_metric`` summary of ``val/<metric>``) and, as
    ``best/val/<metric>`` and ``best/step``, the value and the step it was reached at, carried
    across a resume by :meth:`state_dict`.
    """

    name = "W&B"

    def __init__(
        self,
        config: WandbConfig,
        *,
        run_dir: Path,
        resolved_config: dict[str, Any],
        run_name: str,
        resume_id: str | None = None,
        primary: tuple[str, str] | None = None,
        best: dict[str, Any] | None = None,
    ) -> None:
        import wandb

        self._wandb = wandb
        self.mode = resolve_mode(config)
        self._unrenderable: set[str] = set()
        self.primary = primary
        self.best: dict[str, Any] | None = dict(best) if best else None
        self.run = wandb.init(
            project=config.project,
            entity=config.entity,
            group=config.group,
            tags=list(config.tags),
            job_type=config.job_type,
            name=config.name or run_name,
            config=resolved_config,
            dir=str(run_dir),
            mode=self.mode,
            id=resume_id,
            resume="allow" if resume_id else None,
            settings=wandb.Settings(
                silent=True, console=config.console, init_timeout=config.init_timeout
            ),
        )
        if primary is not None:
            metric, mode = primary
            self.run.define_metric(f"val/{metric}", summary=mode)

    def log(self, values: dict[str, Any], step: int) -> None:
        converted = {}
        for key, value in values.items():
            try:
                converted[key] = self._convert(key, value)
            except Exception as exc:  # one value W&B cannot render must not stop the others
                if key not in self._unrenderable:
                    self._unrenderable.add(key)
                    warn(f"W&B cannot render '{key}' ({type(exc).__name__}: {exc}); skipping it")
        self.run.log(converted, step=step)
        self._track_best(converted, step)

    def _track_best(self, values: dict[str, Any], step: int) -> None:
        if self.primary is None:
            return
        metric, mode = self.primary
        value = values.get(f"val/{metric}")
        if not isinstance(value, int | float) or not math.isfinite(value):
            return
        if self.best is not None:
            better = value > self.best["value"] if mode == "max" else value < self.best["value"]
            if not better:
                return
        self.best = {"value": float(value), "step": int(step)}
        self.run.summary[f"best/val/{metric}"] = float(value)
        self.run.summary["best/step"] = int(step)

    def log_file(self, path: Path, *, name: str, kind: str, aliases: list[str]) -> None:
        """Upload `path` as an artifact (``model`` checkpoints: ``wandb.log_model``)."""
        artifact = self._wandb.Artifact(name=name, type=kind)
        artifact.add_file(str(path))
        self.run.log_artifact(artifact, aliases=aliases)

    def _convert(self, key: str, value: Any) -> Any:
        if isinstance(value, Image):
            return self._wandb.Image(_to_uint8(value.pixels), caption=value.caption or None)
        if isinstance(value, LinePlot):
            columns = [value.x_label, value.y_label, *value.series]
            rows = [list(r) for r in zip(value.x, value.y, *value.series.values(), strict=True)]
            table = self._wandb.Table(data=rows, columns=columns)
            return self._wandb.plot.line(
                table, value.x_label, value.y_label, title=value.title or key
            )
        return value

    def log_summary(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self.run.summary[key] = value

    def finish(self, status: str) -> None:
        self.run.finish(exit_code=0 if status in ("completed", "early_stopped") else 1)
        if self.mode == "offline":
            self._wait_until_written()

    def _wait_until_written(self, timeout: float = 30.0) -> None:
        """``run.finish()`` can return before W&B's service has written the last records of an
        offline run; wait for them so that whoever reads the run directory next sees it whole."""
        path = Path(self.run.dir).parent / f"run-{self.run.id}.wandb"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and is_complete(path):
                return
            time.sleep(0.05)
        warn(f"W&B had not finished writing {path} after {timeout:.0f} s")

    def state_dict(self) -> dict[str, Any]:
        return {"wandb_id": self.run.id, "wandb_best": self.best}


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Scale a float heat map to 0..255 so every viewer shows it the same way."""
    array = np.asarray(pixels, dtype=np.float64)
    if array.ndim == 3:
        return np.clip(array * (255 if array.max() <= 1 else 1), 0, 255).astype(np.uint8)
    low, high = float(np.min(array)), float(np.max(array))
    scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
    return (scaled * 255).astype(np.uint8)
