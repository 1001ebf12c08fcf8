"""The numbers the report's figures draw: logged series of runs, their mean and sample std over
seeds on common steps, and moving averages. Kept apart from drawing so that tests check them
against hand computation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twcore.orchestration.tracking.jsonl import read_jsonl


def sample_std(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """The sample standard deviation (n − 1) along `axis`, as in the tables; 0 for a single
    value (no spread is known, so no band is drawn)."""
    if values.shape[axis] < 2:
        return np.zeros(np.delete(values.shape, axis))
    return values.std(axis=axis, ddof=1)


def read_metrics(run_dir: Path) -> list[dict]:
    """The run's ``metrics.jsonl`` records (none if it has no such file; a torn line is
    skipped)."""
    path = run_dir / "metrics.jsonl"
    return read_jsonl(path) if path.exists() else []


def series(records: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one logged key (non-finite values left out)."""
    pairs = [
        (r["step"], r[key])
        for r in records
        if isinstance(r.get(key), int | float) and math.isfinite(r[key])
    ]
    if not pairs:
        return np.array([]), np.array([])
    steps, values = zip(*pairs, strict=True)
    return np.array(steps), np.array(values, dtype=float)


@dataclass
class SeedCurve:
    """One row's curve: the steps every seed logged, the per-seed values [n, T], their mean and
    sample std."""

    steps: np.ndarray
    values: np.ndarray

    @property
    def n(self) -> int:
        return int(self.values.shape[0])

    @property
    def mean(self) -> np.ndarray:
        return self.values.mean(axis=0)

    @property
    def std(self) -> np.ndarray:
        return sample_std(self.values)


def seed_curve(logs: Sequence[Sequence[dict]], key: str) -> SeedCurve | None:
    """The series of `key` in each run's records (:func:`read_metrics`), on the steps all runs
    that logged it have in common (None if no run logged it): a seed that stopped early (early
    stopping, a failure) cuts the curve of its row at its last step."""
    curves = []
    for records in logs:
        steps, values = series(records, key)
        if len(steps):
            curves.append(dict(zip(steps.tolist(), values.tolist(), strict=True)))
    if not curves:
        return None
    common = sorted(set.intersection(*(set(c) for c in curves)))
    values = np.array([[c[s] for s in common] for c in curves], dtype=float)
    return SeedCurve(np.array(common), values.reshape(len(curves), len(common)))


def varies(values: Sequence[float] | np.ndarray) -> bool:
    """Whether logged values change at all (a constant weighting such as ew does not): the one
    rule the weight figure and the workspace's weight panels share."""
    return len(values) > 0 and float(np.ptp(np.asarray(values, dtype=float))) > 1e-9


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """The trailing mean over the last `window` values along the last axis (fewer at the
    start), so a weight that jumps between 0 and 1 reads as the fraction of steps at 1."""
    if window <= 1:
        return values.astype(float)
    cumulative = np.cumsum(values, axis=-1, dtype=float)
    shifted = np.concatenate(
        [np.zeros((*values.shape[:-1], window)), cumulative[..., :-window]], axis=-1
    )[..., : values.shape[-1]]
    counts = np.minimum(np.arange(1, values.shape[-1] + 1), window)
    return (cumulative - shifted) / counts


def smoothing_window(length: int, points: int = 25) -> int:
    """A moving-average window that leaves about `points` independent values in a series of
    `length` logged steps (1, no smoothing, for a short series)."""
    return max(1, length // points)
