"""Base classes of task plugins.

A task owns data, objectives and evaluation. :class:`Task` is the general interface (used
as-is by environment-driven tasks); :class:`TensorTask` implements it for supervised tasks whose
splits fit in memory, so such a plugin only builds its splits and its spec.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from functools import cached_property
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.losses import base_loss
from twcore.contract.metrics import Direction, supervised_metric_directions, supervised_metrics
from twcore.contract.options import NoConfig
from twcore.contract.spec import Capability, ObjectiveKind, ObjectiveSpec, TaskSpec
from twcore.contract.stream import BatchStream, TensorBatchStream


@runtime_checkable
class DecisionLayer(Protocol):
    """The ``decision`` capability: predict-then-optimise on one prediction head.

    Attributes:
        head: the model head whose output ŷ parameterises the decision problem.
    """

    head: str

    def decide(self, predictions: Tensor, batch: Batch) -> Tensor:
        """Differentiable optimal decisions z*(ŷ) for a batch of instances, [B, ...]."""
        ...

    def objective(self, decisions: Tensor, batch: Batch) -> Tensor:
        """Decision objective obj(y, z) per instance [B] under the true y (higher is better)."""
        ...


class Task(ABC):
    """A task plugin.

    Class attributes:
        Config: the dataclass of this task's options.

    Subclasses must provide :attr:`spec`, :meth:`stream`, :meth:`objective_losses` and
    :meth:`evaluate`. Tasks with the ``decision`` capability set :attr:`decision`; tasks with
    state that changes during training (replay buffers, agents) override :meth:`state_dict` and
    :meth:`load_state_dict` so checkpoints can restore them.
    """

    Config: ClassVar[type] = NoConfig
    run_defaults: ClassVar[dict[str, Any]] = {}
    """Run-level settings this plugin suggests, ``{dotted.key: value}`` (see
    :attr:`twcore.contract.method.Method.run_defaults`)."""
    decision: DecisionLayer | None = None

    def __init__(self, config: Any) -> None:
        self.config = config

    @property
    @abstractmethod
    def spec(self) -> TaskSpec:
        """The task's description: inputs, heads, objectives, capabilities."""

    @abstractmethod
    def stream(
        self,
        split: str,
        batch_size: int,
        *,
        seed: int,
        device: torch.device,
        model: torch.nn.Module | None = None,
    ) -> BatchStream:
        """An endless, resumable stream of batches of `split` (``train`` or ``val``).

        `model` is the model being trained, for tasks whose data depends on it (environments).
        """

    @abstractmethod
    def objective_losses(self, outputs: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        """Per-example loss [B] of every objective, keyed by objective name."""

    @abstractmethod
    def evaluate(
        self, model: torch.nn.Module, split: str, *, device: torch.device, batch_size: int
    ) -> dict[str, float]:
        """Metrics of `model` on `split` (``val`` or ``test``), names as in
        :mod:`~twcore.contract.metrics`."""

    @property
    def metric_directions(self) -> Mapping[str, Direction] | None:
        """Every metric :meth:`evaluate` returns and whether higher (``max``) or lower (``min``)
        is better, or neither (``none``: reported, not scored); None if the task does not say.

        Tables mark the best row by it, ``keep_best``/``best_metric`` and ``twcore tune`` take
        the direction from it, and a run's ``best_metric`` is checked against it before
        training. The conformance suite checks it against what :meth:`evaluate` returns."""
        return None

    @property
    def metric_names(self) -> tuple[str, ...] | None:
        """The names of :attr:`metric_directions` (None if the task does not declare them)."""
        directions = self.metric_directions
        return tuple(directions) if directions is not None else None

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """Splits evaluated at the end of a run: ``val`` (if offered) and ``test``."""
        return ("val", "test") if self.spec.has(Capability.VALIDATION) else ("test",)

    def state_dict(self) -> dict[str, Any]:
        """State that changes during training (default: none)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


def stack_objective_losses(
    task: Task, outputs: Mapping[str, Tensor], batch: Batch, *, per_example: bool = False
) -> Tensor:
    """Objective losses in spec order: means [K], or per-example [K, B] if `per_example`.

    The means are stacked from K scalars, one per objective, so that each objective's loss can
    be differentiated alone (a Gram recorder's ``cut`` starts from those scalars)."""
    losses = task.objective_losses(outputs, batch)
    names = task.spec.objective_names
    if per_example:
        return torch.stack([losses[name] for name in names])
    return torch.stack([losses[name].mean() for name in names])


class TensorTask(Task):
    """A supervised task with in-memory splits ``train``, ``val`` (optional) and ``test``.

    Subclasses implement :meth:`build_spec` and :meth:`build_splits`; the data is built on first
    use. Objectives of kind ``classification``/``regression`` use the base losses; override
    :meth:`custom_loss` for ``custom`` objectives.
    """

    @abstractmethod
    def build_spec(self) -> TaskSpec:
        """The task's spec (called once)."""

    @abstractmethod
    def build_splits(self) -> dict[str, Batch]:
        """The splits ``train``, ``test`` and optionally ``val`` (called once, deterministic)."""

    @cached_property
    def spec(self) -> TaskSpec:
        return self.build_spec()

    @property
    def metric_directions(self) -> Mapping[str, Direction] | None:
        """The supervised metrics of the spec (:func:`~twcore.contract.metrics.supervised_metrics`,
        what :meth:`evaluate` returns); a subclass reporting more adds its own."""
        return supervised_metric_directions(self.spec)

    @cached_property
    def splits(self) -> dict[str, Batch]:
        """The data, built on first access."""
        splits = self.build_splits()
        for name, split in splits.items():
            split.validate()
            if len(split) == 0:
                raise ValueError(f"task split '{name}' is empty")
        return splits

    def split(self, name: str) -> Batch:
        """One split by name, with a clear error for a split the task does not have."""
        if name not in self.splits:
            raise KeyError(f"task has no split '{name}'; it has {sorted(self.splits)}")
        return self.splits[name]

    def stream(
        self,
        split: str,
        batch_size: int,
        *,
        seed: int,
        device: torch.device,
        model: torch.nn.Module | None = None,
    ) -> BatchStream:
        return TensorBatchStream(self.split(split), batch_size, seed=seed, device=device)

    def objective_losses(self, outputs: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        return {o.name: self.objective_loss(o, outputs, batch) for o in self.spec.objectives}

    def objective_loss(
        self, objective: ObjectiveSpec, outputs: Mapping[str, Tensor], batch: Batch
    ) -> Tensor:
        """Per-example loss [B] of one objective."""
        if objective.kind is ObjectiveKind.CUSTOM:
            return self.custom_loss(objective, outputs, batch)
        return base_loss(objective.kind, outputs[objective.head], batch.targets[objective.target])

    def custom_loss(
        self, objective: ObjectiveSpec, outputs: Mapping[str, Tensor], batch: Batch
    ) -> Tensor:
        """Per-example loss of a ``custom`` objective; tasks with such objectives override it."""
        raise NotImplementedError(f"task defines no loss for custom objective '{objective.name}'")

    @torch.no_grad()
    def evaluate(
        self, model: torch.nn.Module, split: str, *, device: torch.device, batch_size: int
    ) -> dict[str, float]:
        data = self.split(split)
        was_training = model.training
        model.eval()
        try:
            sums = _EvaluationSums(self.spec, device)
            for start in range(0, len(data), batch_size):
                chunk = data.index(slice(start, start + batch_size)).to(device)
                outputs = model(chunk.inputs)
                sums.add(self.objective_losses(outputs, chunk), outputs, chunk)
        finally:
            model.train(was_training)
        return sums.metrics(len(data))


class _EvaluationSums:
    """Running sums of per-objective loss, correct predictions and squared error."""

    def __init__(self, spec: TaskSpec, device: torch.device) -> None:
        self.spec = spec
        k = spec.num_objectives
        self.loss = torch.zeros(k, dtype=torch.float64, device=device)
        self.correct = torch.zeros(k, dtype=torch.float64, device=device)
        self.squared_error = torch.zeros(k, dtype=torch.float64, device=device)

    def add(
        self, losses: Mapping[str, Tensor], outputs: Mapping[str, Tensor], batch: Batch
    ) -> None:
        names = self.spec.objective_names
        self.loss += torch.stack([losses[name] for name in names]).double().sum(dim=1)
        for i, objective in enumerate(self.spec.objectives):
            prediction = outputs[objective.head]
            # A custom objective may have no target; the base kinds always have one.
            if objective.kind is ObjectiveKind.CLASSIFICATION:
                target = batch.targets[objective.target]
                self.correct[i] += prediction.argmax(dim=1).eq(target).double().sum()
            elif objective.kind is ObjectiveKind.REGRESSION:
                target = batch.targets[objective.target]
                self.squared_error[i] += (
                    base_loss(objective.kind, prediction, target).double().sum()
                )

    def metrics(self, count: int) -> dict[str, float]:
        loss = (self.loss / count).tolist()
        accuracy = (self.correct / count).tolist()
        squared_error = (self.squared_error / count).tolist()
        objectives = self.spec.objectives
        return supervised_metrics(
            self.spec,
            {o.name: loss[i] for i, o in enumerate(objectives)},
            {
                o.name: accuracy[i]
                for i, o in enumerate(objectives)
                if o.kind is ObjectiveKind.CLASSIFICATION
            },
            {
                o.name: squared_error[i]
                for i, o in enumerate(objectives)
                if o.kind is ObjectiveKind.REGRESSION
            },
        )
