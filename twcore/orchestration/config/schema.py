"""The run-level configuration schema (plugin sections are added by the composer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twcore.contract.optim import OptimConfig
from twcore.contract.options import option


@dataclass
class WandbConfig:
    """Weights & Biases tracking. Offline by default; needs no account."""

    enabled: bool = option(True, help="log the run to W&B (false: only the run directory)")
    mode: str | None = option(
        None,
        choices=("online", "offline", "disabled", "shared"),
        help="online, offline, disabled or shared; default: $WANDB_MODE, else offline",
    )
    project: str = option("twcore", help="W&B project")
    entity: str | None = option(None, help="W&B entity (team or user)")
    group: str | None = option(None, help="W&B group (sweeps set one per sweep)")
    tags: list[str] = option(default_factory=list, help="W&B tags")
    job_type: str = option("train", help="W&B job type")
    name: str | None = option(None, help="W&B run name; default: the run directory's name")
    console: str = option(
        "wrap",
        choices=("off", "wrap", "auto", "redirect"),
        help="W&B console capture (the run's output.log): wrap, auto, redirect or off",
    )
    log_model: str = option(
        "none",
        choices=("none", "best", "last"),
        help="upload a model checkpoint as a W&B artifact at the end: best (the parameters "
        "keep_best kept; needs keep_best=true), last, or none",
    )
    init_timeout: float = option(
        60.0, gt=0, help="seconds to wait for W&B to start before giving up"
    )


@dataclass
class EarlyStoppingConfig:
    """Stop a run once its validation metric stops improving."""

    patience: int = option(
        0,
        ge=0,
        help="stop after this many validation evaluations (every eval_every steps) without "
        "improvement of best_metric (default: the task's primary metric); 0: never",
    )
    min_delta: float = option(0.0, ge=0, help="the least change that counts as an improvement")


@dataclass
class RunConfig:
    """Everything about one run except the plugin sections (method, task, model)."""

    method: Any = option(
        None,
        shown_type="name",
        help="method plugin name (default: the installed one that offers to be the default); "
        "its options live under method.*",
    )
    task: Any = option(
        None,
        shown_type="name",
        help="task plugin name (default: the installed one that offers to be the default); "
        "its options live under task.*",
    )
    model: Any = option(
        None,
        shown_type="name",
        help="model plugin name (default: the installed one that offers to be the default); "
        "its options live under model.*",
    )
    seed: int = option(
        0,
        ge=0,
        lt=2**32,
        help="seed of python, numpy and torch RNGs (model init, data order), below 2**32 (plugins "
        "derive further seeds from it, seed·k + i, which must fit torch's 64-bit seeds)",
    )
    label: str = option(
        "",
        help="a name for this configuration in sweep tables and reports (e.g. main-only); "
        "rows are grouped by it when set",
    )
    device: str = option("auto", help="auto, cpu, cuda or cuda:N (auto: cuda if available)")
    steps: int = option(1000, ge=0, help="number of training steps (method steps)")
    batch_size: int = option(64, ge=1, help="training batch size")
    eval_every: int = option(
        250, ge=0, help="evaluate on the validation split every N steps (0: never)"
    )
    eval_batch_size: int = option(1024, ge=1, help="batch size of evaluation")
    keep_best: bool = option(
        False,
        help="end with the parameters of the best validation evaluation (every eval_every steps "
        "and at the end), judged by best_metric",
    )
    best_metric: str = option(
        "",
        help="what keep_best and early stopping judge by: empty (the task's primary metric), "
        "NAME (the task's declared direction) or min:NAME/max:NAME",
    )
    log_every: int = option(1, ge=1, help="log training values every N steps")
    checkpoint_every: int = option(
        500, ge=0, help="save a checkpoint every N steps (0: only at the end)"
    )
    nproc: int = option(
        1,
        ge=1,
        help="processes of a data-parallel run (each computes the model's trunk on its share of "
        "every batch; started with torchrun, or by this setting on one machine)",
    )
    precision: str = option(
        "32",
        choices=("32", "bf16", "16-mixed"),
        help="32 (float32), bf16 (bfloat16 autocast of the forward passes, on CPU and CUDA) or "
        "16-mixed (float16 autocast with dynamic loss scaling, for methods whose gradients go "
        "only into the optimiser's step)",
    )
    accumulate: int = option(
        1,
        ge=1,
        help="split each step's batch into N micro-batches whose gradients add up (for methods "
        "where that is exact; others refuse)",
    )
    deterministic: bool = option(False, help="use torch deterministic algorithms (slower on GPU)")
    threads: str = option(
        "auto",
        help="torch threads: auto (OMP_NUM_THREADS or a sweep's choice if set, 1 on a busy "
        "machine, else the usable cores) or a number",
    )
    run_dir: str | None = option(None, help="run directory; default: a new one under runs_root")
    runs_root: str = option("runs", help="where default run directories are created")
    plugin_modules: list[str] = option(
        default_factory=list,
        help="modules to import before plugins are looked up (your own plugins, as --plugins); "
        "from a config file or an override, never from a resumed run's config.yaml",
    )
    plugin_paths: list[str] = option(
        default_factory=list,
        help="directories appended to sys.path before plugin_modules are imported",
    )
    imported_plugin_modules: list[str] = option(
        default_factory=list,
        help="recorded, never imported: the plugin modules the run's process had named (a "
        "resume that misses a plugin says to name them with --plugins)",
    )
    imported_plugin_paths: list[str] = option(
        default_factory=list, help="recorded, never used: where those modules were found"
    )
    optim: OptimConfig = option(default_factory=OptimConfig, help="model optimiser")
    early_stopping: EarlyStoppingConfig = option(
        default_factory=EarlyStoppingConfig, help="early stopping on the validation metric"
    )
    wandb: WandbConfig = option(default_factory=WandbConfig, help="W&B tracking")


PLUGIN_SECTIONS = ("method", "task", "model")
"""Top-level keys that name a plugin and hold that plugin's typed options."""
