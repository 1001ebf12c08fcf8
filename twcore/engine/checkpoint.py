"""Atomic checkpoint files, loaded without executing arbitrary pickled code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from twcore.errors import RunDirectoryError


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically: a kill at any moment leaves the old file or the new.

    The data goes to a temporary file in the same directory, is flushed to disk, and then
    replaces `path` in one rename.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_directory(path.parent)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (tensors and plain containers only)."""
    if not path.exists():
        raise RunDirectoryError(f"no checkpoint at {path}: the run saved none before it stopped")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise RunDirectoryError(
            f"checkpoint {path} cannot be read: {type(exc).__name__}: {exc}"
        ) from exc


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
