"""Building a run's task, model, optimiser and method from a composed configuration."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from twcore.compat import check_compatible
from twcore.config.compose import ComposedConfig
from twcore.engine.device import resolve_device
from twcore.engine.rng import seed_everything
from twcore.errors import ConfigError, UsageError
from twcore.method import Method, MethodContext
from twcore.model import Model
from twcore.optim import build_optimizer
from twcore.task import Task
from twcore.tracking import Tracker

METHOD_GENERATOR_OFFSET = 104_729
"""Keeps the method's RNG stream distinct from the global one seeded with the same seed."""


@dataclass
class Components:
    """The live objects of a run."""

    device: torch.device
    task: Task
    model: Model
    optimizer: torch.optim.Optimizer
    method: Method
    context: MethodContext


def build_task(composed: ComposedConfig) -> Task:
    """The task of a configuration, with its spec built (bad task options are usage errors)."""
    registration = composed.plugins["task"]
    try:
        task = registration.cls(composed.sections["task"])
        _ = task.spec
    except UsageError:
        raise
    except ValueError as exc:
        raise ConfigError(f"task '{registration.name}': {exc}") from exc
    return task


def build_components(composed: ComposedConfig, tracker: Tracker) -> Components:
    """Seed, then build task, model, optimiser and method in a fixed order (so a resumed run
    builds the same objects before loading its checkpoint)."""
    run = composed.run
    device = resolve_device(run.device)
    seed_everything(run.seed, deterministic=run.deterministic)
    task = build_task(composed)
    method_registration = composed.plugins["method"]
    check_compatible(
        method_registration.name,
        method_registration.cls.requirements,
        composed.plugins["task"].name,
        task.spec,
    )
    model_registration = composed.plugins["model"]
    try:
        model = model_registration.cls(composed.sections["model"], task.spec).to(device)
    except ValueError as exc:
        raise ConfigError(f"model '{model_registration.name}': {exc}") from exc
    optimizer = build_optimizer(model.parameters(), run.optim)
    context = MethodContext(
        model=model,
        task=task,
        optimizer=optimizer,
        device=device,
        generator=torch.Generator().manual_seed(run.seed + METHOD_GENERATOR_OFFSET),
        tracker=tracker,
        seed=run.seed,
        batch_size=run.batch_size,
        optim_config=run.optim,
    )
    try:
        method = method_registration.cls(composed.sections["method"], context)
    except ValueError as exc:
        raise ConfigError(f"method '{method_registration.name}': {exc}") from exc
    return Components(device, task, model, optimizer, method, context)
