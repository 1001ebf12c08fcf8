"""What a tune reports: its trials, its result, and the facts its outputs are written from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twcore.orchestration.config.compose import ComposedConfig
from twcore.orchestration.config.schema import WandbConfig


@dataclass
class TrialRecord:
    """One counted trial of the study."""

    number: int
    params: dict[str, Any]
    state: str
    value: float | None
    runs: str
    seed_values: dict[int, float | None] = field(default_factory=dict)
    pruned_at: int | None = None
    error: str | None = None


@dataclass
class TuneResult:
    """Where the tune wrote its outputs, and the study's trials."""

    tune_dir: Path
    study_name: str
    storage: str
    objective: str
    trials: list[TrialRecord]
    best: TrialRecord | None
    best_config: Path | None = None
    rerun_command: str | None = None
    report: Path | None = None


@dataclass
class TuneSetup:
    """A tune as its outputs see it.

    Attributes:
        study: the Optuna study.
        tune_dir: where the outputs go.
        storage: the study database's URL with any password masked.
        objective: ``max:NAME`` or ``min:NAME``.
        space: ``{key: expression}`` of the searched keys.
        settings: what the study records of itself (space, objective, seeds, ...).
        wandb: the W&B settings of the tuned configuration.
        compose: the configuration of ``({key: value text}, seed)``.
    """

    study: Any
    tune_dir: Path
    study_name: str
    storage: str
    objective: str
    seeds: list[int]
    aggregate: str
    sampler: str
    pruner: str
    space: dict[str, str]
    settings: dict[str, Any]
    wandb: WandbConfig
    compose: Callable[[dict[str, str], int], ComposedConfig]
