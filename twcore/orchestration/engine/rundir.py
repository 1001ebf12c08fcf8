"""The run directory: resolved config, summary, metrics, checkpoints and the W&B run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from twcore.contract.atomic_files import atomic_write_text, remove_stale_temporaries
from twcore.contract.errors import RunDirectoryError
from twcore.orchestration.engine.lock import RunLock

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
PROVENANCE_FILE = "provenance.json"
"""Where the run came from: one entry per start or resume, oldest first."""
CHECKPOINT_FILE = "checkpoints/last.pt"
BEST_MODEL_FILE = "checkpoints/best.pt"
"""The best parameters (``keep_best``), written for ``wandb.log_model=best``."""


class RunDirectory:
    """Paths and atomic writes of one run's directory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock: RunLock | None = None

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
        """A new, empty run directory, locked for this process: `path`, or
        ``runs_root/<time>-<label>`` (a fresh name, claimed atomically).

        Refuses a directory that already holds a run, so nothing written before is lost, and one
        that another process is using. Call :meth:`release` when the run ends.
        """
        if path is None:
            return cls._claim_new(Path(runs_root), label)
        path = Path(path).absolute()
        if (path / CONFIG_FILE).exists():
            raise _holds_a_run(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirectoryError(f"cannot create run_dir={path}: {exc.strerror}") from exc
        directory = cls(path)
        directory._take_lock()
        if directory.config_path.exists():  # another process claimed it since the check above
            directory.release()
            raise _holds_a_run(path)
        return directory

    @classmethod
    def _claim_new(cls, runs_root: Path, label: str) -> RunDirectory:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        try:
            runs_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirectoryError(f"cannot create runs_root={runs_root}: {exc.strerror}") from exc
        for suffix in range(1, 10_000):
            name = f"{stamp}-{label}" if suffix == 1 else f"{stamp}-{label}-{suffix}"
            candidate = (runs_root / name).absolute()
            try:
                candidate.mkdir()  # atomic: of two processes, one gets each name
            except FileExistsError:
                continue
            except OSError as exc:
                raise RunDirectoryError(
                    f"cannot create a run directory in runs_root={runs_root}: {exc.strerror}"
                ) from exc
            directory = cls(candidate)
            directory._take_lock()
            return directory
        raise RunDirectoryError(f"runs_root={runs_root} has no free name for {stamp}-{label}")

    @classmethod
    def existing(cls, path: str | Path) -> RunDirectory:
        """An existing run directory (for resume), locked for this process; RunDirectoryError
        if it holds no run or another process is using it."""
        run_dir = cls(Path(path).absolute())
        if not run_dir.config_path.exists():
            raise RunDirectoryError(f"{path} is not a run directory (no {CONFIG_FILE} inside)")
        run_dir._take_lock()
        return run_dir

    def _take_lock(self) -> None:
        """Lock the directory, then remove what a killed owner's unfinished writes left (no one
        else writes here while the lock is held)."""
        self.lock = RunLock.acquire(self.path)
        for directory in (self.path, self.checkpoint_path.parent):
            if directory.is_dir():
                remove_stale_temporaries(directory)

    def release(self) -> None:
        """Free the directory's lock (idempotent)."""
        if self.lock is not None:
            self.lock.release()

    def write_config(self, text: str) -> None:
        """Write the resolved ``config.yaml``."""
        atomic_write_text(self.config_path, text)

    def record_provenance(self, entry: dict[str, Any]) -> None:
        """Add `entry` (this start's or resume's provenance) to ``provenance.json``."""
        path = self.path / PROVENANCE_FILE
        try:
            earlier = json.loads(path.read_text()) if path.exists() else []
        except (OSError, json.JSONDecodeError):
            earlier = []
        entries = [*(earlier if isinstance(earlier, list) else []), entry]
        atomic_write_text(path, json.dumps(entries, indent=2, default=_json_default) + "\n")

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write ``summary.json`` atomically."""
        text = json.dumps(summary, indent=2, default=_json_default) + "\n"
        atomic_write_text(self.summary_path, text)


def _holds_a_run(path: Path) -> RunDirectoryError:
    return RunDirectoryError(
        f"run_dir={path} already holds a run; resume it with `twcore resume {path}` or choose "
        "another run_dir"
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
