"""Base class of method plugins and the context the engine hands them.

A method owns how the model's parameters are updated from the task's objectives. The engine
owns the loop (seeding, data, evaluation, checkpoints, tracking) and calls:

- :meth:`Method.train_step` once per step with a training batch: compute losses, update the
  model (and anything the method learns), return a :class:`StepResult`;
- :meth:`Method.on_epoch_end` after each pass over the training data;
- :meth:`Method.on_train_end` once before the final evaluation.

This fits the five loop shapes the design names: per-step weights from per-objective gradients
(``train_step``), per-step meta-updates through a differentiable lookahead (``train_step`` with
:mod:`twcore.autodiff`), per-epoch updates from task-specific parameter deltas
(``on_epoch_end`` with :meth:`MethodContext.stream`), bilevel inner/outer training (one
``train_step`` = one outer iteration drawing many batches from :meth:`MethodContext.stream`), and a
learned loss replacing the base loss (``train_step`` computing its own loss from the model's
outputs and the batch's targets).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn
from torch.func import functional_call

from twcore.contract.batch import Batch
from twcore.contract.loss_scale import DynamicLossScale
from twcore.contract.model import Model
from twcore.contract.optim import OptimConfig, build_optimizer
from twcore.contract.options import NoConfig
from twcore.contract.panels import Panel
from twcore.contract.spec import Requirements, TaskSpec
from twcore.contract.stream import BatchStream
from twcore.contract.task import Task, stack_objective_losses


class Logger(Protocol):
    """Where :meth:`MethodContext.log` sends values (the engine's tracker, or anything a user's
    own loop provides)."""

    def log(self, values: Mapping[str, Any], step: int | None = None) -> None:
        """Log nested values (numbers, tensors, :mod:`twcore.contract.media`) at `step`."""


@dataclass
class StepResult:
    """What one training step reports.

    Attributes:
        losses: [K] mean loss of each objective on the step's batch, in spec order, as the method
            saw them before its update (logged as ``train/loss/<objective>``).
        weights: [K] weight the method gave each objective, if it weights them (logged as
            ``train/weight/<objective>``).
        logs: anything else the method learns or measures, logged under ``method/``: numbers,
            0-d or 1-d tensors, nested dicts of those, :class:`twcore.contract.Image` or
            :class:`twcore.contract.LinePlot`.
    """

    losses: Tensor
    weights: Tensor | None = None
    logs: dict[str, Any] = field(default_factory=dict)


class MethodContext:
    """Everything a method may use: model, task, optimiser, device, RNG, data and logging.

    Attributes:
        model: the model being trained (on :attr:`device`).
        task: the task; its spec is :attr:`spec`.
        optimizer: the optimiser of ``model.parameters()`` built from the run's ``optim`` config.
        device: where the model and batches live.
        generator: a torch RNG for the method's own randomness, seeded from the run seed and saved
            in checkpoints (do not use the global RNG for method decisions).
        tracker: logging; prefer returning values in :class:`StepResult` and use :meth:`log` for
            values outside a step (e.g. per epoch).
        seed: the run seed.
        batch_size: the run's training batch size.
        optim_config: the run's optimiser settings (to build optimisers of the same kind).
        step: the number of completed training steps (kept up to date by the engine).
        accumulate: micro-batches per step (the run's ``accumulate``; only methods with
            :attr:`Method.accumulates` see more than 1).
        loss_scale: the float16 loss scale of a ``precision=16-mixed`` run (only methods with
            :attr:`Method.loss_scaling` get one; None otherwise): the model's outputs pass
            their gradients back scaled, and :meth:`optimizer_step` unscales them first.
    """

    def __init__(
        self,
        *,
        model: Model,
        task: Task,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        generator: torch.Generator,
        tracker: Logger,
        seed: int,
        batch_size: int,
        optim_config: OptimConfig,
        accumulate: int = 1,
        loss_scale: DynamicLossScale | None = None,
    ) -> None:
        self.model = model
        self.task = task
        self.optimizer = optimizer
        self.device = device
        self.generator = generator
        self.tracker = tracker
        self.seed = seed
        self.batch_size = batch_size
        self.optim_config = optim_config
        self.accumulate = accumulate
        self.loss_scale = loss_scale
        self.step = 0
        self._stream_count = 0

    @property
    def spec(self) -> TaskSpec:
        """The task's spec."""
        return self.task.spec

    def outputs(
        self, batch: Batch, params: Mapping[str, Tensor] | None = None
    ) -> dict[str, Tensor]:
        """Model outputs for `batch`, with the model's parameters or the given ones (functional)."""
        outputs: dict[str, Tensor]
        if params is None:
            outputs = self.model(batch.inputs)
        else:
            outputs = functional_call(self.model, dict(params), (batch.inputs,))
        return outputs

    def objective_losses(
        self,
        batch: Batch,
        params: Mapping[str, Tensor] | None = None,
        *,
        per_example: bool = False,
    ) -> Tensor:
        """Objective losses in spec order: means [K], or per-example [K, B] if `per_example`.

        With `params` the model is evaluated functionally at those parameters (e.g. a lookahead
        θ'), keeping the graph to them.
        """
        return stack_objective_losses(
            self.task, self.outputs(batch, params), batch, per_example=per_example
        )

    def stream(self, split: str = "train", batch_size: int | None = None) -> BatchStream:
        """A fresh stream of `split` for the method's own use (validation batches, per-task
        passes), independent of the engine's training stream.

        Its order is derived from the run seed and the number of streams opened so far (which
        checkpoints keep), so it is reproducible and a resumed run opens the same streams. A
        method that keeps a stream across steps saves ``stream.state_dict()`` in its own
        ``state_dict`` and restores it with ``stream.load_state_dict``.
        """
        self._stream_count += 1
        return self.task.stream(
            split,
            batch_size or self.batch_size,
            seed=method_stream_seed(self.seed, self._stream_count),
            device=self.device,
            model=self.model,
        )

    def make_optimizer(
        self, params: Iterable[nn.Parameter], **overrides: Any
    ) -> torch.optim.Optimizer:
        """An optimiser of the run's kind over other parameters (``lr=1e-3`` for meta-params)."""
        config = OptimConfig(**{**self.optim_config.__dict__, **overrides})
        return build_optimizer(params, config)

    def optimizer_step(self) -> None:
        """Clip gradients as configured (``optim.grad_clip``) and step the model's optimiser.

        In a float16 run the model's gradients are unscaled first, and a step whose gradients
        are not all finite is skipped (the gradients are cleared, the loss scale backs off)."""
        if self.loss_scale is not None and not self.loss_scale.unscale(self.model.parameters()):
            self.optimizer.zero_grad(set_to_none=True)
            return
        if self.optim_config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optim_config.grad_clip)
        self.optimizer.step()

    def log(self, values: Mapping[str, Any]) -> None:
        """Log values under ``method/`` at the current step."""
        self.tracker.log({"method": dict(values)}, step=self.step)

    def state_dict(self) -> dict[str, Any]:
        """The context's own state (method RNG, streams opened, the loss scale of a float16
        run), saved in checkpoints."""
        state: dict[str, Any] = {
            "generator": self.generator.get_state(),
            "streams_opened": self._stream_count,
        }
        if self.loss_scale is not None:
            state["loss_scale"] = self.loss_scale.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.generator.set_state(state["generator"].cpu())  # CPU state, however it was loaded
        self._stream_count = int(state["streams_opened"])
        if self.loss_scale is not None and "loss_scale" in state:
            self.loss_scale.load_state_dict(state["loss_scale"])


METHOD_GENERATOR_OFFSET = 104_729
"""Keeps the method's RNG stream distinct from the global one seeded with the same seed."""


def method_generator(run_seed: int) -> torch.Generator:
    """The RNG a method gets as :attr:`MethodContext.generator` in a run seeded with
    `run_seed` (so a user's own loop can draw what a method drew in the engine)."""
    return torch.Generator().manual_seed(run_seed + METHOD_GENERATOR_OFFSET)


def method_stream_seed(run_seed: int, index: int) -> int:
    """The seed of the `index`-th stream (1-based) a method opens with
    :meth:`MethodContext.stream` in a run seeded with `run_seed` (so a user's own loop can
    draw the very batches a method drew in the engine)."""
    return run_seed * 7_919 + index


class Method(ABC):
    """A method plugin.

    Class attributes:
        Config: the dataclass of this method's options.
        requirements: what the method needs from a task; a tuple means "any one of these".
        run_defaults: run-level settings this method suggests, as ``{dotted.key: value}`` (e.g.
            ``{"steps": 30}`` for a method whose step is a whole outer iteration); they replace
            the run's defaults, and a config file or ``key=value`` still overrides them.
        outer_loop: whether one step is a whole outer iteration (many model updates, as
            TaskMet's inner training): ``twcore bench`` then times it over its suggested number
            of steps and marks it.
        data_parallel: whether the method may run data-parallel (``nproc`` > 1). The engine
            splits the model's trunk over the processes so that everything a method computes
            from the model's outputs is the global, single-process value; a method that
            reaches around the model (its own collectives, per-process state it never
            synchronises) sets this to False and is refused before training.
        accumulates: whether a step on a batch may be split into ``accumulate`` micro-batches
            whose gradients add up to the whole batch's exactly (a method whose step is
            nonlinear in the batch's gradients keeps False and is refused with
            ``accumulate`` > 1). See :attr:`MethodContext.accumulate`.
        loss_scaling: whether the method is exact under float16 loss scaling
            (``precision=16-mixed``): every gradient it computes goes into the model
            optimiser's step through :meth:`MethodContext.optimizer_step`, none into its own
            decisions (weights computed from the losses' values are fine; gradient cosines,
            Gram matrices, lookaheads and meta-gradients are not, since they would see the
            gradients scaled). A method that keeps False is refused with
            ``precision=16-mixed``. See :mod:`twcore.contract.loss_scale`.
        panels: the dashboard panels the method's own logged values are read with (TaskMet's
            metric heat map, AdaLFL's learned loss), for the team workspace ``twcore report``
            writes (:class:`~twcore.contract.panels.Panel`).

    Subclasses keep everything they learn (weights, networks, their optimisers) in
    :meth:`state_dict` so that a resumed run continues exactly; values must be tensors, numbers,
    strings or lists/dicts of those (checkpoints load with ``weights_only=True``).
    """

    Config: ClassVar[type] = NoConfig
    requirements: ClassVar[Requirements | tuple[Requirements, ...]] = Requirements()
    run_defaults: ClassVar[dict[str, Any]] = {}
    outer_loop: ClassVar[bool] = False
    data_parallel: ClassVar[bool] = True
    accumulates: ClassVar[bool] = False
    loss_scaling: ClassVar[bool] = False
    panels: ClassVar[tuple[Panel, ...]] = ()

    def __init__(self, config: Any, ctx: MethodContext) -> None:
        self.config = config
        self.ctx = ctx

    @abstractmethod
    def train_step(self, batch: Batch) -> StepResult:
        """One training step on `batch`: update the model, return losses and learned values."""

    def on_epoch_end(self, epoch: int) -> Mapping[str, Any]:
        """Called after training epoch `epoch` (1-based count of completed epochs); values
        returned are logged under ``method/``."""
        return {}

    def on_train_end(self) -> None:
        """Called once after the last step, before the final evaluation."""

    def state_dict(self) -> dict[str, Any]:
        """Everything the method learned or keeps between steps."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
