"""The training loop: drives the method, evaluates, checkpoints, tracks, and records the outcome."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from twcore.autodiff.data_parallel import traffic
from twcore.contract.callbacks import Callbacks
from twcore.contract.errors import DivergenceError, TwcoreError, first_line
from twcore.contract.method import StepResult
from twcore.contract.model import parameters_are_finite
from twcore.contract.schedule import apply_schedule
from twcore.orchestration.config.compose import ComposedConfig
from twcore.orchestration.console import warn
from twcore.orchestration.engine.best import BestSnapshot, selection_metric
from twcore.orchestration.engine.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from twcore.orchestration.engine.components import Components
from twcore.orchestration.engine.distributed import any_process, lost_a_process
from twcore.orchestration.engine.early_stopping import EarlyStopping
from twcore.orchestration.engine.precision import autocast
from twcore.orchestration.engine.progress import Progress
from twcore.orchestration.engine.rng import capture_rng_state, restore_rng_state
from twcore.orchestration.engine.run_failure import Phase, run_failure
from twcore.orchestration.engine.rundir import BEST_MODEL_FILE, CHECKPOINT_FILE, RunDirectory
from twcore.orchestration.engine.stopping import StopRequest, graceful_stop, stop_signals_interrupt
from twcore.orchestration.engine.summary import FINISHED_STATUSES, build_summary
from twcore.orchestration.tracking import Tracker
from twcore.orchestration.tracking.jsonl import JsonlBackend
from twcore.orchestration.tracking.provenance import run_provenance
from twcore.orchestration.tracking.run_identity import run_name, run_tags
from twcore.orchestration.tracking.wandb_backend import WandbBackend, resolve_mode

# The engine's own work: a failure here names a plugin only if one's code is on the traceback.
PREPARING = Phase("preparing the run")
RESTORING = Phase("restoring the checkpoint")
TRAINING = Phase("training")
CHECKPOINTING = Phase("saving a checkpoint")
FINISHING = Phase("recording the result")
# Calls into a plugin: a failure names that plugin (or the one whose code raised).
DRAWING = Phase("drawing a training batch", owner="task")
TRAIN_STEP = Phase("train_step", owner="method")
EPOCH_END = Phase("on_epoch_end", owner="method")
TRAIN_END = Phase("on_train_end", owner="method")
EVALUATING = Phase("evaluate", owner="task")


@dataclass
class RunResult:
    """Where a run was written and its ``summary.json`` contents."""

    run_dir: Path
    summary: dict[str, Any]

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        return self.summary["metrics"]


class Trainer:
    """Runs one training run to the end (or to a stop), resuming from a checkpoint if given."""

    def __init__(
        self,
        composed: ComposedConfig,
        components: Components,
        run_dir: RunDirectory,
        tracker: Tracker,
        *,
        show_progress: bool = True,
        callbacks: Callbacks | None = None,
    ) -> None:
        self.composed = composed
        self.run = composed.run
        self.components = components
        self.run_dir = run_dir
        self.tracker = tracker
        self.world = components.world
        self.show_progress = show_progress and self.world.writes
        self.stopped = False
        self.stopped_by_callback = False
        self.step = 0
        self.epochs_seen = 0
        self.elapsed_before = 0.0
        self.train_time = 0.0
        self.steps_this_process = 0
        self.last_metrics: dict[str, dict[str, float]] = {}
        self.last_checkpoint_step: int | None = None
        self.best = BestSnapshot.for_run(self.run, components.task)
        self.stopper = EarlyStopping.for_run(self.run, components.task)
        self.early_stopped = False
        self.callbacks = callbacks or Callbacks()
        self.provenance: dict[str, Any] = {}
        self.phase = PREPARING
        self.model_updates = 0
        components.optimizer.register_step_post_hook(self._count_update)
        self.stream = components.task.stream(
            "train",
            self.run.batch_size,
            seed=self.run.seed,
            device=components.device,
            model=components.model,
        )
        traffic.reset()
        self.started = time.perf_counter()

    # -- lifecycle -------------------------------------------------------------------------

    def train(
        self, resume_state: dict[str, Any] | None = None, *, reuse_directory: bool = False
    ) -> RunResult:
        """Train until ``steps`` (or a stop request) and write the summary; return the result.

        `resume_state` is a checkpoint to continue from; `reuse_directory` says the run
        directory already holds this run's records (kept up to the checkpoint's step).

        Raises DivergenceError on a non-finite objective and :class:`RunFailure` (naming the
        plugin, phase and step) when anything else raises, after recording the status in
        ``summary.json`` when it can still be written.
        """
        status = "failed"
        progress: Progress | None = None
        # The stop handlers cover the recording of how the run ended too: a SIGTERM arriving
        # then (torchrun sends one to every process when another dies) is noted, not obeyed,
        # so it cannot cut short the summary that says why the run stopped.
        with graceful_stop() as stop:
            try:
                self._begin(resume_state, reuse_directory)
                progress = self._progress()
                result = self._run_to_end(stop, progress)
                status = result.summary["status"]
                return result
            except DivergenceError as exc:
                status = "diverged"
                self._finish_after_error(status, str(exc))
                raise
            except KeyboardInterrupt:
                status = "interrupted"
                self._finish_after_error(
                    status, f"interrupted at step {self.step}; {self._checkpoint_note()}"
                )
                raise
            except TwcoreError as exc:
                self._finish_after_error(status, str(exc))
                raise
            except Exception as exc:
                if self.world.distributed and lost_a_process(exc):
                    message = (
                        f"another process of this data-parallel run stopped at step {self.step} "
                        f"({lost_a_process(exc)}); {self._checkpoint_note()}; continue with "
                        f"`twcore resume {self.run_dir.path}`"
                    )
                    self._finish_after_error(status, message)
                    raise TwcoreError(message) from exc
                plugins = self.composed.plugins
                failure = run_failure(exc, phase=self.phase, step=self.step, plugins=plugins)
                self._finish_after_error(status, str(failure), {"failure": failure.describe()})
                raise failure from exc
            finally:
                if progress is not None:
                    progress.close()
                self.tracker.finish(status)

    def _begin(self, resume_state: dict[str, Any] | None, reuse_directory: bool) -> None:
        if resume_state is not None:
            with self._during(RESTORING):
                self._restore(resume_state)
        if self.world.writes:
            self.provenance = run_provenance(self.composed, step=self.step)
            self.run_dir.record_provenance(self.provenance)
        self._attach_backends(resume_state, reuse_directory)
        self._write_summary("running", {})
        self.phase = TRAINING

    def _progress(self) -> Progress:
        plugins = self.composed.plugins
        return Progress(
            total=self.run.steps,
            initial=self.step,
            enabled=self.show_progress,
            label=f"{plugins['method'].name}/{plugins['task'].name} s{self.run.seed}",
        )

    def _run_to_end(self, stop: StopRequest, progress: Progress) -> RunResult:
        self._loop(stop, progress)
        # Agreed once more: a signal during the last step still stops with "interrupted".
        if self._stop_agreed(stop):
            self._save_checkpoint()
            if self.stopped_by_callback and not stop.requested:
                message = f"stopped by a callback at step {self.step}"
                return self._finish("stopped", self.last_metrics, message)
            by = stop.signal_name or "a signal to another process"
            message = f"stopped by {by} at step {self.step}"
            return self._finish("interrupted", self.last_metrics, message)
        # The checkpoint comes before on_train_end (which may, e.g., restore the best
        # parameters), so a resume that trains longer continues the training trajectory.
        self._save_checkpoint()
        # With the checkpoint written, a stop need not wait for the (maybe long) phases after
        # it: the run records "interrupted" and a resume repeats them (as it does for a signal
        # that came after the loop's last agreement, while the checkpoint was written).
        with stop_signals_interrupt():
            if stop.requested:
                raise KeyboardInterrupt
            with self._during(TRAIN_END):
                self.components.method.on_train_end()
            final = self._final_evaluation(progress, known=self._restore_best())
        return self._finish("early_stopped" if self.early_stopped else "completed", final, None)

    @contextmanager
    def _during(self, phase: Phase) -> Iterator[None]:
        """Mark `phase` for failure reports while the block runs; it stays marked if the block
        raises (that is the phase the report names)."""
        outer, self.phase = self.phase, phase
        yield
        self.phase = outer

    def _attach_backends(self, resume_state: dict[str, Any] | None, reuse_directory: bool) -> None:
        if not self.world.writes:
            return
        resume_step = self.step if reuse_directory else None
        self.tracker.backends.append(
            JsonlBackend(self.run_dir.metrics_path, resume_step=resume_step)
        )
        if not self.run.wandb.enabled:
            return
        tracker_state = (resume_state or {}).get("tracker", {})
        try:
            backend = WandbBackend(
                dataclasses.replace(
                    self.run.wandb,
                    tags=run_tags(self.composed),
                    name=run_name(self.composed, self.run_dir.path),
                ),
                run_dir=self.run_dir.path,
                resolved_config={**self.composed.to_dict(), "provenance": self.provenance},
                run_name=self.run_dir.path.name,
                resume_id=tracker_state.get("wandb_id"),
                primary=selection_metric(self.run, self.components.task),
                best=tracker_state.get("wandb_best"),
            )
        except Exception as exc:  # W&B must never stop a run
            warn(
                f"W&B could not start ({type(exc).__name__}: {first_line(exc)}); "
                f"training continues, logging only to {self.run_dir.metrics_path}"
            )
            return
        self.tracker.backends.append(backend)

    # -- the loop --------------------------------------------------------------------------

    def _loop(self, stop: StopRequest, progress: Progress) -> None:
        run = self.run
        while self.step < run.steps and not self.early_stopped and not self._stop_agreed(stop):
            apply_schedule(self.components.optimizer, run.optim, self.step, run.steps)
            began = time.perf_counter()
            with self._during(DRAWING):
                batch = next(self.stream)
            with self._during(TRAIN_STEP), self._precision():
                result = self.components.method.train_step(batch)
            losses = result.losses.detach()
            finite = bool(torch.isfinite(losses).all())
            self.train_time += time.perf_counter() - began
            self.step += 1
            self.steps_this_process += 1
            self.components.context.step = self.tracker.step = self.step
            if not finite:
                self._diverged(losses)
            self.callbacks.on_step_end(self.step, result)
            if self.step % run.log_every == 0:
                self._log_step(result, losses)
                progress.update(self.step, losses)
            self._maybe_end_epoch()
            if (
                run.eval_every
                and self.step % run.eval_every == 0
                and self.step < run.steps  # the final evaluation covers the last step
                and "val" in self.components.task.eval_splits
            ):
                metrics = self._evaluate("val")
                progress.evaluation(
                    self.step, "val", metrics, self.components.task.spec.summary_metrics
                )
                if self.best is not None:
                    self.best.consider(self.step, metrics, self.components.model)
                if self.stopper is not None and self.stopper.should_stop(self.step, metrics):
                    self.early_stopped = True
            if run.checkpoint_every and self.step % run.checkpoint_every == 0:
                self._save_checkpoint()

    def _stop_agreed(self, stop: StopRequest) -> bool:
        """Whether to stop now: a signal or a callback's request in any process stops them all
        at the same step."""
        self.stopped_by_callback = self.step > 0 and self.callbacks.should_stop(self.step)
        self.stopped = any_process(
            stop.requested or self.stopped_by_callback, self.components.device
        )
        return self.stopped

    def _precision(self) -> Any:
        return autocast(self.run.precision, self.components.device)

    def _log_step(self, result: StepResult, losses: torch.Tensor) -> None:
        names = self.components.task.spec.objective_names
        values: dict[str, Any] = {
            "train": {
                "loss": dict(zip(names, losses, strict=True)),
                "epoch": self.stream.completed_epochs,
                "lr": self.components.optimizer.param_groups[0]["lr"],
            }
        }
        if result.weights is not None:
            values["train"]["weight"] = dict(zip(names, result.weights.detach(), strict=True))
        scale = self.components.context.loss_scale
        if scale is not None:  # a float16 run: its loss scale, and the steps it skipped
            values["train"]["loss_scale"] = scale.scale
            values["train"]["skipped_steps"] = scale.skipped_steps
        if result.logs:
            values["method"] = result.logs
        self.tracker.log(values, step=self.step)

    def _maybe_end_epoch(self) -> None:
        while self.stream.completed_epochs > self.epochs_seen:
            self.epochs_seen += 1
            with self._during(EPOCH_END):
                logs = self.components.method.on_epoch_end(self.epochs_seen)
            if logs:
                self.tracker.log({"method": dict(logs)}, step=self.step)

    def _diverged(self, losses: torch.Tensor) -> None:
        names = self.components.task.spec.objective_names
        values = losses.tolist()
        bad = [(n, v) for n, v in zip(names, values, strict=True) if not math.isfinite(v)]
        listed = ", ".join(f"'{n}' is {v}" for n, v in bad)
        kept = self._checkpoint_note()
        raise DivergenceError(
            f"training diverged at step {self.step}: objective {listed}; {kept}",
            step=self.step,
            objectives=[n for n, _ in bad],
        )

    # -- evaluation ------------------------------------------------------------------------

    def _evaluate(self, split: str, known: dict[str, float] | None = None) -> dict[str, float]:
        """Evaluate the model on `split` (or take `known`, metrics of these very parameters),
        record and log them."""
        if known is None:
            with self._during(EVALUATING), self._precision():
                known = self.components.task.evaluate(
                    self.components.model,
                    split,
                    device=self.components.device,
                    batch_size=self.run.eval_batch_size,
                )
        metrics = known
        self.last_metrics[split] = metrics
        self.tracker.log({split: metrics}, step=self.step)
        self.callbacks.on_eval(self.step, split, metrics)
        return metrics

    def _restore_best(self) -> dict[str, dict[str, float]]:
        """With ``keep_best``: score the final parameters on val too, load the best, and return
        the val metrics of the loaded parameters (so the final evaluation need not repeat it)."""
        if self.best is None or "val" not in self.components.task.eval_splits:
            return {}
        with self._during(EVALUATING), self._precision():
            metrics = self.components.task.evaluate(
                self.components.model,
                "val",
                device=self.components.device,
                batch_size=self.run.eval_batch_size,
            )
        self.best.consider(self.step, metrics, self.components.model)
        self.best.restore(self.components.model)
        return {"val": self.best.metrics} if self.best.metrics else {}

    def _final_evaluation(
        self, progress: Progress, known: dict[str, dict[str, float]]
    ) -> dict[str, dict[str, float]]:
        """Evaluate every split (reusing `known` metrics of the current parameters) and log the
        run summary."""
        final = {}
        splits = [s for s in self.components.task.eval_splits if s not in known]
        if splits:
            progress.note(f"step {self.step}: final evaluation ({', '.join(splits)})")
        for split in self.components.task.eval_splits:
            final[split] = self._evaluate(split, known.get(split))
            progress.evaluation(
                self.step, split, final[split], self.components.task.spec.summary_metrics
            )
        self.tracker.log_summary({split: values for split, values in final.items()})
        return final

    # -- checkpoints and summary -----------------------------------------------------------

    def _save_checkpoint(self) -> None:
        with self._during(CHECKPOINTING):
            self._write_checkpoint()
        self.last_checkpoint_step = self.step

    def _write_checkpoint(self) -> None:
        if not parameters_are_finite(self.components.model):
            raise DivergenceError(
                f"training diverged at step {self.step}: model parameters are not finite; "
                f"{self._checkpoint_note()}",
                step=self.step,
                objectives=[],
            )
        if not self.world.writes:
            return
        save_checkpoint(
            self.run_dir.checkpoint_path,
            {
                "format": CHECKPOINT_FORMAT,
                "world_size": self.world.size,
                "step": self.step,
                "epochs_seen": self.epochs_seen,
                "elapsed_s": self._elapsed(),
                "model_updates": self.model_updates,
                "model": self.components.model.state_dict(),
                "optimizer": self.components.optimizer.state_dict(),
                "method": self.components.method.state_dict(),
                "task": self.components.task.state_dict(),
                "stream": self.stream.state_dict(),
                "rng": capture_rng_state(),
                "context": self.components.context.state_dict(),
                "tracker": self.tracker.state_dict(),
                "last_metrics": self.last_metrics,
                "best": self.best.state_dict() if self.best is not None else None,
                "early_stopping": self.stopper.state_dict() if self.stopper is not None else None,
                "early_stopped": self.early_stopped,
            },
        )

    def _checkpoint_note(self) -> str:
        if self.last_checkpoint_step is None:
            return "no checkpoint was saved before"
        path, step = self.run_dir.checkpoint_path, self.last_checkpoint_step
        return f"last good checkpoint: {path} (step {step})"

    def _restore(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.epochs_seen = int(state["epochs_seen"])
        self.elapsed_before = float(state["elapsed_s"])
        self.model_updates = int(state.get("model_updates", 0))
        self.components.model.load_state_dict(state["model"])
        self.components.optimizer.load_state_dict(state["optimizer"])
        self.components.method.load_state_dict(state["method"])
        self.components.task.load_state_dict(state["task"])
        self.stream.load_state_dict(state["stream"])
        restore_rng_state(state["rng"], own_device_only=self.world.distributed)
        self.components.context.load_state_dict(state["context"])
        self.components.context.step = self.tracker.step = self.step
        self.last_metrics = state.get("last_metrics", {})
        if self.best is not None and state.get("best") is not None:
            self.best.load_state_dict(state["best"])
        if self.stopper is not None and state.get("early_stopping") is not None:
            self.stopper.load_state_dict(state["early_stopping"])
        self.early_stopped = bool(state.get("early_stopped", False))
        self.last_checkpoint_step = self.step

    def _count_update(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """Every step of the model's optimiser, whoever takes it (inner loops included)."""
        self.model_updates += 1

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def _finish(
        self,
        status: str,
        metrics: dict[str, dict[str, float]],
        error: str | None,
        extra: dict[str, Any] | None = None,
    ) -> RunResult:
        ended: dict[str, Any] = {"wandb": self._wandb_info()}
        if self.best is not None:
            ended["best_step"] = self.best.step
        if self.stopper is not None:
            ended["early_stopping"] = {
                "metric": self.stopper.metric,
                "best": self.stopper.best,
                "best_step": self.stopper.best_step,
                "evaluations_without_improvement": self.stopper.waited,
            }
        if error is not None:
            ended["error"] = error
        with self._during(FINISHING):
            summary = self._write_summary(status, metrics, {**ended, **(extra or {})})
            logged = {
                key: summary[key]
                for key in ("steps", "wall_time_s", "steps_per_s", "model_updates")
            }
            if "threads" in summary:  # the number W&B can chart; summary.json has the why
                logged["threads"] = summary["threads"]["threads"]
            self.tracker.log_summary({"run": logged})
            if summary["status"] in FINISHED_STATUSES:
                self._save_best_model()
                self._upload_model()
        return RunResult(self.run_dir.path, summary)

    def _save_best_model(self) -> None:
        """``keep_best``: the selected parameters as ``checkpoints/best.pt`` (``model``, the
        ``step`` and the ``metric``/``value`` they were selected by), next to ``last.pt``."""
        if self.best is None or not self.best.parameters or not self.world.writes:
            return
        state = {
            "model": self.best.parameters,
            "step": self.best.step,
            "metric": self.best.metric,
            "value": self.best.value,
        }
        save_checkpoint(self.run_dir.path / BEST_MODEL_FILE, state)

    def _upload_model(self) -> None:
        """``wandb.log_model=best|last``: the checkpoint as a W&B ``model`` artifact (a W&B
        failure is a warning: the checkpoint is on disk either way)."""
        choice = self.run.wandb.log_model
        live = [b for b in self.tracker.backends if isinstance(b, WandbBackend)]
        if choice == "none" or not live:
            return
        path = self.run_dir.path / CHECKPOINT_FILE
        if choice == "best" and (self.run_dir.path / BEST_MODEL_FILE).exists():
            path = self.run_dir.path / BEST_MODEL_FILE
        try:
            name = f"model-{live[0].run.id}"
            live[0].log_file(path, name=name, kind="model", aliases=[choice, f"step-{self.step}"])
        except Exception as exc:
            warn(f"W&B could not upload {path} ({type(exc).__name__}: {first_line(exc)})")

    def _finish_after_error(
        self, status: str, error: str, extra: dict[str, Any] | None = None
    ) -> None:
        """Record how the run ended, if the summary can still be written (on a full disk it may
        not: the original error matters more, so this one becomes a warning)."""
        try:
            self._finish(status, self.last_metrics, error, extra)
        except OSError as exc:
            warn(f"could not record status '{status}' in {self.run_dir.summary_path}: {exc}")

    def _write_summary(
        self, status: str, metrics: dict[str, dict[str, float]], extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        steps_per_s = self.steps_this_process / self.train_time if self.train_time > 0 else 0.0
        summary = build_summary(
            composed=self.composed,
            status=status,
            metrics=metrics,
            steps=self.step,
            wall_time_s=self._elapsed(),
            steps_per_s=steps_per_s,
            model_updates=self.model_updates,
            run_dir=str(self.run_dir.path),
            device=self.components.device,
            task=self.components.task,
            extra={
                "world_size": self.world.size,
                **(
                    {"threads": self.components.threads.record()}
                    if self.components.threads is not None
                    else {}
                ),
                "provenance": self.provenance,
                **self._communication(),
                **(extra or {}),
            },
        )
        if self.world.writes:
            self.run_dir.write_summary(summary)
        return summary

    def _communication(self) -> dict[str, Any]:
        """A data-parallel run's collectives per training step in this process (evaluations
        included), for the summary."""
        if not self.world.distributed or self.steps_this_process == 0:
            return {}
        moved = traffic.as_dict()
        return {
            "communication_per_step": {
                "all_reduce_calls": moved["all_reduce_calls"] / self.steps_this_process,
                "all_reduce_mib": moved["all_reduce_bytes"] / self.steps_this_process / 2**20,
                "all_gather_calls": moved["all_gather_calls"] / self.steps_this_process,
                "all_gather_mib": moved["all_gather_bytes"] / self.steps_this_process / 2**20,
            }
        }

    def _wandb_info(self) -> dict[str, Any]:
        live = [b for b in self.tracker.backends if isinstance(b, WandbBackend)]
        if not self.run.wandb.enabled:
            return {"enabled": False}
        if not live:
            return {
                "enabled": True,
                "mode": resolve_mode(self.run.wandb),
                "error": "W&B failed; see warnings",
            }
        run = live[0].run
        mode = resolve_mode(self.run.wandb)
        return {
            "enabled": True,
            "mode": mode,
            "run_id": run.id,
            "name": run.name,
            "path": run.path,
            "dir": str(run.dir),
            **({"url": run.url} if mode == "online" else {}),
        }
