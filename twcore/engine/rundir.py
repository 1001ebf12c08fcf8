"""The run directory: resolved config, summary, metrics, checkpoints and the W&B run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from twcore.errors import RunDirectoryError

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoints/last.pt"


class RunDirectory:
    """Paths and atomic writes of one run's directory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @classmethod
    def create(cls, path: str | Path | None, *, runs_root: str | Path, label: str) -> RunDirectory:
        """A new, empty run directory: `path`, or ``runs_root/<time>-<label>``.

        Refuses a directory that already holds a run, so nothing written before is lost.
        """
        if path is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            candidate = Path(runs_root) / f"{stamp}-{label}"
            suffix = 1
            while candidate.exists():
                suffix += 1
                candidate = Path(runs_root) / f"{stamp}-{label}-{suffix}"
            path = candidate
        path = Path(path).absolute()
        if (path / CONFIG_FILE).exists():
            raise RunDirectoryError(
                f"run_dir={path} already holds a run; resume it with `twcore resume {path}` or "
                "choose another run_dir"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirectoryError(f"cannot create run_dir={path}: {exc.strerror}") from exc
        return cls(path)

    @classmethod
    def existing(cls, path: str | Path) -> RunDirectory:
        """An existing run directory (for resume); RunDirectoryError if it holds no run."""
        run_dir = cls(Path(path).absolute())
        if not run_dir.config_path.exists():
            raise RunDirectoryError(f"{path} is not a run directory (no {CONFIG_FILE} inside)")
        return run_dir

    def write_config(self, text: str) -> None:
        """Write the resolved ``config.yaml``."""
        _atomic_write(self.config_path, text)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write ``summary.json`` atomically."""
        _atomic_write(
            self.summary_path, json.dumps(summary, indent=2, default=_json_default) + "\n"
        )


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to summary.json")
