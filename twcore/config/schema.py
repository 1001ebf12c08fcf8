"""The run-level configuration schema (plugin sections are added by the composer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twcore.config.fields import option


@dataclass
class OptimConfig:
    """The optimiser of the model's parameters (methods may build more from it)."""

    name: str = option("adam", help="optimiser: sgd, adam, adamw or rmsprop")
    lr: float = option(1e-3, help="learning rate")
    weight_decay: float = option(0.0, help="L2 weight decay (decoupled for adamw)")
    momentum: float = option(0.9, help="momentum (sgd, rmsprop)")
    betas: list[float] = option(default_factory=lambda: [0.9, 0.999], help="Adam betas (β1, β2)")
    grad_clip: float | None = option(None, help="clip the global gradient norm to this value")


@dataclass
class WandbConfig:
    """Weights & Biases tracking. Offline by default; needs no account."""

    enabled: bool = option(True, help="log the run to W&B (false: only the run directory)")
    mode: str | None = option(
        None, help="online, offline or disabled; default: $WANDB_MODE, else offline"
    )
    project: str = option("twcore", help="W&B project")
    entity: str | None = option(None, help="W&B entity (team or user)")
    group: str | None = option(None, help="W&B group (sweeps set one per sweep)")
    tags: list[str] = option(default_factory=list, help="W&B tags")
    job_type: str = option("train", help="W&B job type")
    name: str | None = option(None, help="W&B run name; default: the run directory's name")
    console: str = option("off", help="W&B console capture: off, wrap or auto")
    init_timeout: float = option(60.0, help="seconds to wait for W&B to start before giving up")


@dataclass
class RunConfig:
    """Everything about one run except the plugin sections (method, task, model)."""

    method: Any = option(
        shown_type="name", default="ew", help="method plugin name; its options live under method.*"
    )
    task: Any = option(
        shown_type="name",
        default="toy-multitask",
        help="task plugin name; its options live under task.*",
    )
    model: Any = option(
        shown_type="name", default="mlp", help="model plugin name; its options live under model.*"
    )
    seed: int = option(0, help="seed of python, numpy and torch RNGs (model init, data order)")
    label: str = option(
        "",
        help="a name for this configuration in sweep tables and reports (e.g. main-only); "
        "rows are grouped by it when set",
    )
    device: str = option("auto", help="auto, cpu, cuda or cuda:N (auto: cuda if available)")
    steps: int = option(1000, help="number of training steps (method steps)")
    batch_size: int = option(64, help="training batch size")
    eval_every: int = option(250, help="evaluate on the validation split every N steps (0: never)")
    eval_batch_size: int = option(1024, help="batch size of evaluation")
    keep_best: bool = option(
        False,
        help="end with the parameters of the best validation evaluation (every eval_every steps "
        "and at the end), judged by best_metric",
    )
    best_metric: str = option(
        "", help="what keep_best judges by: empty (the task's primary metric) or min:NAME/max:NAME"
    )
    log_every: int = option(1, help="log training values every N steps")
    checkpoint_every: int = option(500, help="save a checkpoint every N steps (0: only at the end)")
    deterministic: bool = option(False, help="use torch deterministic algorithms (slower on GPU)")
    run_dir: str | None = option(None, help="run directory; default: a new one under runs_root")
    runs_root: str = option("runs", help="where default run directories are created")
    optim: OptimConfig = option(default_factory=OptimConfig, help="model optimiser")
    wandb: WandbConfig = option(default_factory=WandbConfig, help="W&B tracking")


PLUGIN_SECTIONS = ("method", "task", "model")
"""Top-level keys that name a plugin and hold that plugin's typed options."""
