"""Atomic checkpoint files, loaded without executing arbitrary pickled code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from twcore.contract.atomic_files import atomic_write
from twcore.contract.errors import RunDirectoryError


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically: a kill or a full disk at any moment leaves the old
    file or the new one; a failing write (ENOSPC) raises the OSError it is."""
    atomic_write(path, lambda handle: torch.save(state, handle))


CHECKPOINT_FORMAT = 2
"""The layout of a run's checkpoint (``last.pt``); bumped when it changes incompatibly (2: the
methods' state is their rule's, e.g. TaskMet's under ``rule``)."""

RUN_CHECKPOINT_KEYS = (
    "format", "step", "epochs_seen", "elapsed_s", "model", "optimizer", "method", "task",
    "stream", "rng", "context", "tracker",
)  # fmt: skip


def check_run_checkpoint(state: Any, path: Path) -> None:
    """RunDirectoryError unless `state` has the layout of a run's checkpoint (a file from
    elsewhere, or one edited by hand, fails here in one line rather than deep in a restore)."""
    if not isinstance(state, dict):
        raise RunDirectoryError(f"checkpoint {path} is not a twcore run checkpoint")
    missing = [key for key in RUN_CHECKPOINT_KEYS if key not in state]
    if missing:
        raise RunDirectoryError(
            f"checkpoint {path} is not a twcore run checkpoint (it lacks {', '.join(missing)})"
        )
    if state["format"] != CHECKPOINT_FORMAT:
        raise RunDirectoryError(
            f"checkpoint {path} has format {state['format']!r}; this twcore reads format "
            f"{CHECKPOINT_FORMAT}"
        )
    step = state["step"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise RunDirectoryError(f"checkpoint {path} records step {step!r}, not a step count")


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (tensors and plain containers only)."""
    if not path.exists():
        raise RunDirectoryError(f"no checkpoint at {path}: the run saved none before it stopped")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        text = _ANSI.sub("", str(exc))
        if "Weights only load failed" in text:
            detail = _refusal_detail(text)
            raise RunDirectoryError(
                f"checkpoint {path} holds something other than tensors and plain data "
                f"({detail}); twcore never loads such a file: it was not written by twcore, or "
                "was changed since"
            ) from exc
        raise RunDirectoryError(
            f"checkpoint {path} cannot be read: {type(exc).__name__}: {text}"
        ) from exc


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _refusal_detail(text: str) -> str:
    """What torch's weights-only unpickler refused, from its several-paragraph message (which
    goes on to suggest ``weights_only=False``, the very thing not to do with such a file)."""
    for line in text.splitlines():
        line = line.strip().removeprefix("WeightsUnpickler error:").strip()
        if line.startswith("Unsupported"):
            return line.split(" was not ")[0].split(". ")[0]
    return "refused by torch's weights-only loader"
