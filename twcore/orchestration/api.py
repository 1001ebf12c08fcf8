"""Running and resuming training runs from Python (the CLI is a thin layer over this).

Example::

    import twcore
    result = twcore.run(["method=ew", "task=toy-multitask", "steps=200", "seed=1"])
    print(result.run_dir, result.metrics["test"]["avg_acc"])
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from twcore.contract.callbacks import Callback, Callbacks, as_callbacks
from twcore.contract.errors import (
    ConfigError,
    DivergenceError,
    RunDirectoryError,
    TwcoreError,
    UnknownPluginError,
)
from twcore.contract.weighting_method import accumulates, scales_losses
from twcore.orchestration.config.compose import ComposedConfig, compose, load_yaml_file
from twcore.orchestration.config.overrides import Override, parse_override
from twcore.orchestration.console import warn
from twcore.orchestration.engine.checkpoint import check_run_checkpoint, load_checkpoint
from twcore.orchestration.engine.components import (
    Components,
    build_components,
    build_task,
    check_data_parallel,
    check_run_plan,
    check_step_settings,
)
from twcore.orchestration.engine.device import resolve_device
from twcore.orchestration.engine.distributed import (
    broadcast_text,
    launch,
    launch_environment,
    launched_world_rank,
    launched_world_size,
    leave_world,
    needs_launch,
    process_device,
)
from twcore.orchestration.engine.lock import LOCK_FILE
from twcore.orchestration.engine.rundir import RunDirectory
from twcore.orchestration.engine.summary import finished
from twcore.orchestration.engine.threads import (
    ThreadChoice,
    busy_warning,
    choose_threads,
    run_threads,
)
from twcore.orchestration.engine.trainer import RunResult, Trainer
from twcore.orchestration.plugin_modules import named_modules
from twcore.orchestration.registry import PluginRegistry
from twcore.orchestration.tracking import Tracker
from twcore.orchestration.user_plugins import check_workers_see


def run(
    overrides: Sequence[str | Override] | Mapping[str, Any] = (),
    *,
    config_file: str | Path | None = None,
    registry: PluginRegistry | None = None,
    show_progress: bool = False,
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """Compose a configuration, train, and return the run directory and summary.

    Args:
        overrides: ``key=value`` strings, or a mapping ``{key: value}`` of dotted keys.
        config_file: optional YAML file below the overrides.
        registry: plugins to use (default: the installed ones).
        show_progress: show a progress bar / evaluation lines on stderr.
        callbacks: :class:`~twcore.contract.callbacks.Callback` objects the engine
            calls after every step and evaluation, and asks whether to stop (not for
            ``nproc`` > 1 started from here: the processes it starts cannot call them).
    """
    composed = compose(_as_overrides(overrides), config_file=config_file, registry=registry)
    return run_composed(composed, show_progress=show_progress, callbacks=callbacks)


def preview(
    overrides: Sequence[str] | Mapping[str, Any] = (),
    *,
    config_file: str | Path | None = None,
    registry: PluginRegistry | None = None,
) -> str:
    """The configuration `overrides` compose to, as the YAML a run would write to its
    ``config.yaml``, after the checks a run makes before training: the config's keys, types and
    values, the task's options (it is built), and
    :func:`~twcore.orchestration.engine.components.check_run_plan` (pairing, ``best_metric``,
    early stopping, ``wandb.log_model``).
    Nothing is trained or written (``twcore run --dry-run``)."""
    composed = compose(_as_overrides(overrides), config_file=config_file, registry=registry)
    check_run_plan(composed, build_task(composed))
    return composed.to_yaml()


def run_composed(
    composed: ComposedConfig,
    *,
    show_progress: bool = False,
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """Train a configuration that is already composed (sweeps compose every trial first).

    With ``nproc`` > 1 outside ``torchrun`` the run's processes are started here (see
    :mod:`twcore.orchestration.engine.distributed`) and the result is read from the run
    directory their process 0 wrote.
    """
    hooks = as_callbacks(callbacks)
    if needs_launch(composed.run.nproc):
        if hooks.callbacks:
            raise ConfigError(
                f"callbacks cannot reach the {composed.run.nproc} processes nproc starts; start "
                "them with torchrun and pass the callbacks in the script each one runs"
            )
        return _launch_run(composed, show_progress=show_progress)
    return _run_here(composed, show_progress=show_progress, callbacks=hooks)


def _run_here(composed: ComposedConfig, *, show_progress: bool, callbacks: Callbacks) -> RunResult:
    threads = _chosen_threads(composed)
    with run_threads(threads):
        return _run_with(composed, threads, show_progress=show_progress, callbacks=callbacks)


def _train(
    composed: ComposedConfig,
    components: Components,
    directory: RunDirectory,
    tracker: Tracker,
    show_progress: bool,
    callbacks: Callbacks,
    resume_state: dict[str, Any] | None = None,
    *,
    reuse_directory: bool = False,
) -> RunResult:
    """Train a run whose directory is claimed: afresh, or (`reuse_directory`) as a resume of
    it, from `resume_state` where it has a checkpoint."""
    trainer = Trainer(
        composed, components, directory, tracker, show_progress=show_progress, callbacks=callbacks
    )
    return trainer.train(resume_state=resume_state, reuse_directory=reuse_directory)


def _chosen_threads(composed: ComposedConfig) -> ThreadChoice:
    """The run's torch threads (ConfigError for a bad ``threads``)."""
    return choose_threads(composed.run.threads)


def _warn_if_busy(threads: ThreadChoice) -> None:
    """The busy-machine warning, from the process that writes, once the run is about to train
    (a run refused for bad input says only why)."""
    message = busy_warning(threads)
    if message is not None and os.environ.get("RANK", "0") == "0":
        warn(message)


def _run_with(
    composed: ComposedConfig, threads: ThreadChoice, *, show_progress: bool, callbacks: Callbacks
) -> RunResult:
    tracker = Tracker([])
    run_dir: RunDirectory | None = None
    completed = False
    try:
        components = build_components(composed, tracker, threads=threads)
        world = components.world
        # The process count is part of the run (a resume must match it), however it started.
        composed.tree.nproc = composed.run.nproc = world.size
        if world.writes:
            run_dir = _claim_run_directory(composed)
        path = broadcast_text(str(run_dir.path) if run_dir else None, components.device)
        directory = run_dir or RunDirectory(Path(path))
        composed.tree.run_dir = str(directory.path)
        composed.run.run_dir = str(directory.path)
        if world.writes:
            directory.write_config(composed.reusable_yaml())
        _warn_if_busy(threads)
        result = _train(composed, components, directory, tracker, show_progress, callbacks)
        completed = True
        return result
    finally:
        if run_dir is not None:
            run_dir.release()
        leave_world(completed=completed)


def _claim_run_directory(composed: ComposedConfig) -> RunDirectory:
    label = "-".join(
        [composed.plugins["method"].name, composed.plugins["task"].name, f"s{composed.run.seed}"]
    )
    return RunDirectory.create(composed.run.run_dir, runs_root=composed.run.runs_root, label=label)


def _check_before_launch(composed: ComposedConfig, nproc: int) -> None:
    """ConfigError, before any process starts, for what the launched processes would refuse
    (so the refusal is one line with exit code 2, not N processes' failures)."""
    check_data_parallel(composed, nproc)
    check_workers_see(
        list(composed.plugins.values()), launch_environment(nproc), backend="data-parallel"
    )
    method = composed.plugins["method"]
    check_step_settings(
        composed.run,
        method.name,
        accumulates=accumulates(method.cls),
        scales_losses=scales_losses(method.cls),
    )
    device = resolve_device(composed.run.device)
    if device.type == "cuda" and torch.cuda.device_count() < nproc:
        raise ConfigError(
            f"nproc={nproc} needs one GPU per process and this machine has "
            f"{torch.cuda.device_count()}"
        )


def _launch_run(composed: ComposedConfig, *, show_progress: bool) -> RunResult:
    """Start a data-parallel run's processes on this machine and wait for them."""
    _check_before_launch(composed, composed.run.nproc)
    directory = _claim_run_directory(composed)
    directory.release()  # the launched process 0 takes it
    composed.tree.run_dir = str(directory.path)
    with tempfile.TemporaryDirectory(prefix="twcore-launch-") as scratch:
        config = Path(scratch) / "config.yaml"
        config.write_text(composed.to_yaml(), encoding="utf-8")
        quiet = [] if show_progress else ["--quiet"]
        code = launch(
            composed.run.nproc,
            ["run", *quiet, "--config", str(config)],
            overrides=list(composed.overrides),
            config_file=composed.config_file,
        )
    if _remove_if_unused(directory.path):
        raise _launch_failed(code, "before creating its run directory")
    return _launched_result(directory.path, code, written_after=0)


def _remove_if_unused(path: Path) -> bool:
    """Remove a run directory the launched processes left without a run (they failed first);
    whether it was removed."""
    entries = list(path.iterdir())
    if all(entry.name == LOCK_FILE and entry.is_file() for entry in entries):
        for entry in entries:
            entry.unlink()
        path.rmdir()
        return True
    return False


def _summary_time(path: Path) -> int:
    summary = path / "summary.json"
    return summary.stat().st_mtime_ns if summary.exists() else 0


def _launched_result(path: Path, code: int, *, written_after: int) -> RunResult:
    """The result a launched run wrote (a summary newer than `written_after`, the time of the
    one there before the launch); TwcoreError naming its status and error otherwise."""
    summary_path = path / "summary.json"
    if _summary_time(path) <= written_after:
        raise _launch_failed(code, f"before recording anything in {path}")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    if finished(summary.get("status")) or summary.get("status") in ("interrupted", "stopped"):
        return RunResult(path, summary)
    reason = summary.get("error") or f"status {summary.get('status')}"
    error: TwcoreError = (
        DivergenceError(reason, step=int(summary.get("steps", 0)), objectives=[])
        if summary.get("status") == "diverged"
        else TwcoreError(f"the data-parallel run in {path} failed: {reason}")
    )
    error.exit_code = max(error.exit_code, 1)
    raise error


def _launch_failed(code: int, when: str) -> TwcoreError:
    error = TwcoreError(
        f"the data-parallel run's processes failed {when} (exit code {code}; their errors "
        "are above)"
    )
    error.exit_code = code or 1
    return error


def resume(
    run_dir: str | Path,
    overrides: Sequence[str | Override] | Mapping[str, Any] = (),
    *,
    registry: PluginRegistry | None = None,
    show_progress: bool = False,
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """Continue a run from its last checkpoint (after a kill, a stop, or to train longer with
    ``steps=N``); the result is the same as if it had never stopped.

    A run killed before its first checkpoint starts again from step 0 in the same directory.
    Overrides may change anything but the plugins (``method``, ``task``, ``model``).
    """
    parsed = [o if isinstance(o, Override) else parse_override(o) for o in _as_overrides(overrides)]
    for override in parsed:
        if override.plugin_section is not None:
            raise ConfigError(
                f"{override}: a resumed run keeps its {override.plugin_section}; "
                "start a new run to change it"
            )
    base = _recorded_config(run_dir)
    nproc = next((o.value for o in reversed(parsed) if o.key == "nproc"), base.get("nproc", 1))
    nproc = nproc if isinstance(nproc, int) else 1  # a bad value is reported by composition
    recorded = int(base.get("nproc", 1) or 1)
    if nproc != recorded and (Path(run_dir) / "checkpoints" / "last.pt").exists():
        raise _other_process_count(recorded, nproc)
    if needs_launch(nproc):
        path = Path(run_dir).absolute()
        before = _summary_time(path)
        quiet = [] if show_progress else ["--quiet"]
        args = [str(o) for o in parsed]
        code = launch(nproc, ["resume", *quiet, str(path), *args])
        return _launched_result(path, code, written_after=before)
    writes = launched_world_rank() == 0
    # Process 0 locks the directory from here: released whatever happens.
    directory = RunDirectory.existing(run_dir) if writes else RunDirectory(Path(run_dir).absolute())
    completed = False
    try:
        base["run_dir"] = str(directory.path)
        composed = _compose_recorded(parsed, base, registry)
        state: dict[str, Any] | None = None
        if directory.checkpoint_path.exists():
            device = process_device(resolve_device(composed.run.device))
            state = load_checkpoint(directory.checkpoint_path, device)
            check_run_checkpoint(state, directory.checkpoint_path)
            _refuse_fewer_steps(composed.run.steps, int(state["step"]), directory.path)
            saved = int(state.get("world_size", 1))
            if saved != launched_world_size():
                raise _other_process_count(saved, launched_world_size())
        elif writes:
            warn(f"{directory.path} has no checkpoint yet; training it again from step 0")
        tracker = Tracker([])
        threads = _chosen_threads(composed)
        with run_threads(threads):
            components = build_components(composed, tracker, threads=threads)
            if writes:
                directory.write_config(composed.reusable_yaml())
            hooks = as_callbacks(callbacks)
            _warn_if_busy(threads)
            result = _train(
                composed,
                components,
                directory,
                tracker,
                show_progress,
                hooks,
                state,
                reuse_directory=True,
            )
            completed = True
            return result
    finally:
        directory.release()
        leave_world(completed=completed)


def _other_process_count(saved: int, now: int) -> ConfigError:
    return ConfigError(
        f"the checkpoint was saved by a run of {saved} process(es) and this resume has {now}; "
        f"resume with nproc={saved} (sums over processes round differently, so the run would "
        "not continue exactly)"
    )


def _recorded_config(run_dir: str | Path) -> dict[str, Any]:
    """A run directory's recorded configuration (RunDirectoryError if it holds no run)."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise RunDirectoryError(f"{run_dir} is not a run directory (no config.yaml inside)")
    return load_yaml_file(path)


def _compose_recorded(
    overrides: Sequence[Override], base: dict[str, Any], registry: PluginRegistry | None
) -> ComposedConfig:
    """A resumed run's configuration. The plugin modules its config.yaml records are not
    imported (a run directory is data, never code): a plugin they registered that this process
    lacks is a ConfigError saying which modules to name with ``--plugins``."""
    try:
        return compose(overrides, base=base, registry=registry)
    except UnknownPluginError as exc:
        named = [*(base.get("plugin_modules") or []), *(base.get("imported_plugin_modules") or [])]
        recorded = [m for m in dict.fromkeys(named) if m not in named_modules()]
        if not recorded:
            raise
        places = base.get("imported_plugin_paths") or []
        where = f" (found in {', '.join(map(str, places))} when the run started)" if places else ""
        raise ConfigError(
            f"{exc}; the run registered plugins from module(s) {', '.join(map(str, recorded))}"
            f"{where}: resume with --plugins {','.join(map(str, recorded))}"
        ) from exc


def _refuse_fewer_steps(steps: int, trained: int, path: Path) -> None:
    """A resume cannot train a run to fewer steps than it already has."""
    if steps < trained:
        raise ConfigError(
            f"steps={steps} is below the {trained} steps {path} has already trained; give "
            f"steps={trained} or more (or start a new run)"
        )


def _as_overrides(overrides: Sequence[str | Override] | Mapping[str, Any]) -> list[str | Override]:
    if isinstance(overrides, Mapping):
        return [Override.of(key, value) for key, value in overrides.items()]
    return list(overrides)
