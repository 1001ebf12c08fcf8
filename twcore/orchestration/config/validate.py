"""Checks of run-level settings beyond the constraints their fields declare."""

from __future__ import annotations

import re

from twcore.contract.errors import ConfigError
from twcore.contract.optim import validate_optim_config
from twcore.orchestration.config.schema import RunConfig

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_BEST_METRIC = re.compile(r"^(((min|max):)?[^\s:]+)?$")


def validate_run_config(run: RunConfig) -> None:
    """Raise ConfigError naming the first out-of-range setting."""
    if not _DEVICE.match(run.device):
        raise ConfigError(
            f"device='{run.device}' is not a device; valid: auto, cpu, cuda, cuda:N, mps"
        )
    if not _BEST_METRIC.match(run.best_metric):
        raise ConfigError(
            f"best_metric='{run.best_metric}' must be empty (the task's primary metric), NAME "
            "(the direction the task declares) or min:NAME / max:NAME, e.g. mse or min:mse"
        )
    if run.run_dir is not None and not str(run.run_dir).strip():
        raise ConfigError(
            "run_dir is empty; give a directory (run_dir=runs/my-run) or leave it out for a new "
            "one under runs_root"
        )
    if not str(run.runs_root).strip():
        raise ConfigError("runs_root is empty; give a directory, e.g. runs_root=runs")
    validate_optim_config(run.optim)
