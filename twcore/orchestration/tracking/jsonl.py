"""The run directory's own record of everything logged: ``metrics.jsonl``, one line per log call.

It is always written (W&B may be off or broken), and tools such as sweeps and reports read it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from twcore.contract.atomic_files import atomic_write_text
from twcore.contract.media import Image, LinePlot


class JsonlBackend:
    """Appends ``{"step": s, key: value, ...}`` lines to a file.

    On resume from step s, lines logged after s by the interrupted process are dropped first, so
    the file holds each step once.
    """

    name = "metrics.jsonl"

    def __init__(self, path: Path, *, resume_step: int | None = None) -> None:
        self.path = path
        if resume_step is not None and path.exists():
            _truncate_after(path, resume_step)
        self._file = path.open("a", encoding="utf-8")

    def log(self, values: dict[str, Any], step: int) -> None:
        record: dict[str, Any] = {"step": step}
        for key, value in values.items():
            if isinstance(value, LinePlot):
                record[key] = {"x": value.x, "y": value.y, **value.series}
            elif isinstance(value, Image):
                continue
            else:
                record[key] = _json_number(value)
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def finish(self, status: str) -> None:
        self._file.close()

    def state_dict(self) -> dict[str, Any]:
        return {}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All complete records of a metrics file (a torn last line from a kill is skipped)."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _truncate_after(path: Path, step: int) -> None:
    kept = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def _json_number(value: Any) -> Any:
    """JSON has no NaN/inf: write them as strings so the file stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
