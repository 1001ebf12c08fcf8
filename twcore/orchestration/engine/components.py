"""Building a run's task, model, optimiser and method from a composed configuration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from twcore.autodiff.data_parallel import shard_module
from twcore.contract.errors import ConfigError, TwcoreError, first_line
from twcore.contract.method import Method, MethodContext, method_generator
from twcore.contract.model import Model
from twcore.contract.optim import build_optimizer
from twcore.contract.pairing import check_compatible
from twcore.contract.task import Task
from twcore.contract.weighting_method import accumulates, scales_losses
from twcore.orchestration.config.compose import ComposedConfig
from twcore.orchestration.config.schema import RunConfig
from twcore.orchestration.engine.best import metric_goal
from twcore.orchestration.engine.device import resolve_device
from twcore.orchestration.engine.distributed import World, join_world
from twcore.orchestration.engine.precision import loss_scale
from twcore.orchestration.engine.rng import seed_everything
from twcore.orchestration.engine.run_failure import Phase, run_failure
from twcore.orchestration.engine.threads import ThreadChoice
from twcore.orchestration.tracking import Tracker

T = TypeVar("T")


@dataclass
class Components:
    """The live objects of a run."""

    device: torch.device
    task: Task
    model: Model
    optimizer: torch.optim.Optimizer
    method: Method
    context: MethodContext
    world: World
    threads: ThreadChoice | None = None


def build_task(composed: ComposedConfig) -> Task:
    """The task of a configuration, with its spec built (bad task options are usage errors)."""
    registration = composed.plugins["task"]

    def build() -> Task:
        task = registration.cls(composed.sections["task"])
        _ = task.spec
        return task

    return construct(composed, "task", build)


def construct(composed: ComposedConfig, section: str, build: Callable[[], T]) -> T:
    """``build()`` a plugin's object: a ValueError is a bad option of that plugin (ConfigError,
    exit 2); any other exception is a :class:`PluginFailure` naming the plugin."""
    registration = composed.plugins[section]
    try:
        return build()
    except TwcoreError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{section} '{registration.name}': {first_line(exc)}") from exc
    except Exception as exc:
        phase = Phase(f"building the {section}", owner=section)
        raise run_failure(exc, phase=phase, step=None, plugins=composed.plugins) from exc


def check_early_stopping(run: RunConfig, task: Task, task_name: str) -> None:
    """ConfigError unless early stopping, when asked for, has validation evaluations to judge."""
    patience = run.early_stopping.patience
    if patience == 0:
        return
    if run.eval_every == 0:
        raise ConfigError(
            f"early_stopping.patience={patience} judges validation evaluations, and "
            "eval_every=0 makes none; set eval_every=N"
        )
    if "val" not in task.eval_splits:
        raise ConfigError(
            f"early_stopping.patience={patience}: task '{task_name}' has no validation split"
        )


def check_run_plan(composed: ComposedConfig, task: Task) -> None:
    """The checks a configuration passes before anything trains or is written, once its task
    is built: the method/task pairing, ``best_metric``, early stopping and ``wandb.log_model``
    (ConfigError, or IncompatiblePairingError, naming what to change)."""
    run = composed.run
    method = composed.plugins["method"]
    task_name = composed.plugins["task"].name
    check_compatible(method.name, method.cls.requirements, task_name, task.spec)
    check_step_settings(
        run,
        method.name,
        accumulates=accumulates(method.cls),
        scales_losses=scales_losses(method.cls),
    )
    metric_goal(run.best_metric, task, task_name=f"task '{task_name}'")
    check_early_stopping(run, task, task_name)
    if run.wandb.log_model == "best" and not run.keep_best:
        raise ConfigError(
            "wandb.log_model=best uploads the parameters keep_best keeps; set keep_best=true "
            "(or wandb.log_model=last)"
        )


def build_components(
    composed: ComposedConfig, tracker: Tracker, *, threads: ThreadChoice | None = None
) -> Components:
    """Seed, then build task, model, optimiser and method in a fixed order (so a resumed run
    builds the same objects before loading its checkpoint). `threads`: the run's thread
    choice, already applied (recorded in the summary)."""
    run = composed.run
    world, device = join_world(run.nproc, resolve_device(run.device))
    seed_everything(run.seed, deterministic=run.deterministic)
    task = build_task(composed)
    check_run_plan(composed, task)
    method_registration = composed.plugins["method"]
    model_class = composed.plugins["model"].cls
    model = construct(
        composed, "model", lambda: model_class(composed.sections["model"], task.spec).to(device)
    )
    if world.distributed:
        check_data_parallel(composed, world.size)
        construct(composed, "model", lambda: shard_module(model.trunk, world.process_group()))
    optimizer = build_optimizer(model.parameters(), run.optim)
    scale = loss_scale(run.precision)
    context = MethodContext(
        model=model,
        task=task,
        optimizer=optimizer,
        device=device,
        generator=method_generator(run.seed),
        tracker=tracker,
        seed=run.seed,
        batch_size=run.batch_size,
        optim_config=run.optim,
        accumulate=run.accumulate,
        loss_scale=scale,
    )
    method = construct(
        composed, "method", lambda: method_registration.cls(composed.sections["method"], context)
    )
    check_step_settings(
        run,
        method_registration.name,
        accumulates=method.accumulates,
        scales_losses=method.loss_scaling,
    )
    if scale is not None:  # every forward pass of the model passes its gradients back scaled
        model.register_forward_hook(lambda _model, _inputs, out: scale.scale_gradients(out))
    return Components(device, task, model, optimizer, method, context, world, threads)


def check_step_settings(
    run: RunConfig, method: str, *, accumulates: bool | None, scales_losses: bool | None
) -> None:
    """ConfigError for ``accumulate`` > 1 or ``precision=16-mixed`` with a method that cannot
    run them exactly (False; None, unknown until the method is built, passes)."""
    if run.accumulate > 1 and accumulates is False:
        raise ConfigError(
            f"accumulate={run.accumulate}: method '{method}' does not accumulate micro-batches "
            "(its step is not linear in the batch's gradients); use accumulate=1, or a method "
            "whose weights are fixed before each step"
        )
    if run.precision == "16-mixed" and scales_losses is False:
        raise ConfigError(
            f"precision=16-mixed: method '{method}' computes with gradients beyond the "
            "optimiser's step (cosines, lookaheads, fits or meta-gradients), which float16 loss "
            "scaling would scale; use precision=bf16 (which needs no loss scale) or 32"
        )


def check_data_parallel(composed: ComposedConfig, nproc: int) -> None:
    """ConfigError unless the method may run data-parallel and every process gets examples."""
    method = composed.plugins["method"]
    if not method.cls.data_parallel:
        raise ConfigError(
            f"nproc={nproc}: method '{method.name}' does not run data-parallel; use nproc=1"
        )
    run = composed.run
    smallest = {
        "batch_size": run.batch_size,
        "batch_size ÷ accumulate": run.batch_size // run.accumulate,
        "eval_batch_size": run.eval_batch_size,
    }
    for name, rows in smallest.items():
        if rows < nproc:
            raise ConfigError(
                f"{name}={rows} is below nproc={nproc}: every process needs at least one "
                "example of each batch"
            )
