"""Range checks of run-level settings that types alone cannot express."""

from __future__ import annotations

import re

from twcore.config.schema import RunConfig
from twcore.errors import ConfigError
from twcore.optim import validate_optim_config

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_WANDB_MODES = ("online", "offline", "disabled", "shared")
_BEST_METRIC = re.compile(r"^((min|max):\S+)?$")
MAX_SEED = 2**32
"""Seeds are below 2**32: numpy's legacy seeding takes 32 bits, and plugins derive further
seeds from the run's (``seed * k + i``) that must stay within torch's 64 bits."""


def validate_run_config(run: RunConfig) -> None:
    """Raise ConfigError naming the first out-of-range setting."""
    minimums = {
        "steps": 0,
        "batch_size": 1,
        "eval_every": 0,
        "eval_batch_size": 1,
        "log_every": 1,
        "checkpoint_every": 0,
    }
    for key, minimum in minimums.items():
        value = getattr(run, key)
        if value < minimum:
            raise ConfigError(f"{key}={value} must be >= {minimum}")
    if not _DEVICE.match(run.device):
        raise ConfigError(
            f"device='{run.device}' is not a device; valid: auto, cpu, cuda, cuda:N, mps"
        )
    if run.wandb.mode is not None and run.wandb.mode not in _WANDB_MODES:
        raise ConfigError(
            f"wandb.mode='{run.wandb.mode}' is not a W&B mode; valid: {', '.join(_WANDB_MODES)}"
        )
    if not _BEST_METRIC.match(run.best_metric):
        raise ConfigError(
            f"best_metric='{run.best_metric}' must be empty (the task's primary metric) or "
            "min:NAME / max:NAME, e.g. min:mse"
        )
    if not 0 <= run.seed < MAX_SEED:
        raise ConfigError(f"seed={run.seed} must be in [0, 2**32), e.g. seed=0")
    if run.run_dir is not None and not str(run.run_dir).strip():
        raise ConfigError(
            "run_dir is empty; give a directory (run_dir=runs/my-run) or leave it out for a new "
            "one under runs_root"
        )
    if not str(run.runs_root).strip():
        raise ConfigError("runs_root is empty; give a directory, e.g. runs_root=runs")
    validate_optim_config(run.optim)
