"""A TensorTask base for predict-then-optimise problems (the ``decision`` capability).

An instance is a set of n items with F features each; a per-item model predicts one value per
item (head ``y``: inputs [B, n, F] -> outputs [B, n, 1]), a solver turns the predictions of the
whole batch into decisions z*(ŷ), and the decisions are scored by the true objective obj(y, z).

Subclasses generate the splits and say how to decide and how to score; this base class provides
the spec, the ``mse`` training objective, the decision layer, the cached data with its quality
references and the evaluation metrics:

- ``mse``: mean squared error of the predictions over the items of an instance, averaged;
- ``objective``: mean true objective of the decisions made from the predictions (evaluation
  decisions, e.g. hard top-k);
- ``ndq``: normalised decision quality (see :mod:`twcore_task_decision.quality`), primary;
- ``dq_optimal``, ``dq_random``: the two ends of the ndq scale for the split;
- plus the usual ``loss/mse``, ``loss``, ``avg_loss``, ``worst_loss``, ``main_loss``.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from functools import partial
from typing import Any, ClassVar

import torch
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.data_cache import cached_tensors
from twcore.contract.metrics import Direction, supervised_metric_directions, supervised_metrics
from twcore.contract.spec import Capability, HeadSpec, ObjectiveKind, ObjectiveSpec, Role, TaskSpec
from twcore.contract.task import TensorTask
from twcore_task_decision.quality import QualityReference, quality_reference

HEAD = "y"
"""The prediction head (and target key) of every decision task."""

SPLITS = ("train", "val", "test")


def item_values(predictions: Tensor) -> Tensor:
    """Per-item predictions [B, n] from the head's output [B, n, 1] (or [B, n] as is)."""
    return predictions.squeeze(-1) if predictions.dim() == 3 else predictions


def check_finite(predictions: Tensor) -> None:
    """Raise ValueError for NaN or infinite predictions (a solver would return garbage)."""
    if not torch.isfinite(predictions).all():
        bad = int((~torch.isfinite(predictions)).sum())
        raise ValueError(
            f"decision layer got {bad} non-finite prediction(s) (NaN or inf) in a batch of shape "
            f"{tuple(predictions.shape)}; predictions must be finite"
        )


class PredictThenOptimise:
    """The :class:`twcore.contract.task.DecisionLayer` of a :class:`DecisionTask`.

    ``decide(predictions [B, n, 1] or [B, n], batch)`` returns the task's differentiable
    training decisions (e.g. soft top-k) [B, ...]; ``objective(decisions, batch)`` returns the
    true objective obj(y, z) per instance [B] (higher is better).
    """

    head: str = HEAD

    def __init__(self, task: DecisionTask) -> None:
        self.task = task

    def decide(self, predictions: Tensor, batch: Batch) -> Tensor:
        values = item_values(predictions)
        check_finite(values)
        return self.task.decide(values, batch)

    def objective(self, decisions: Tensor, batch: Batch) -> Tensor:
        return self.task.decision_objective(decisions, batch)


class DecisionTask(TensorTask):
    """Base of the predict-then-optimise tasks.

    Subclasses set :attr:`name`, implement :attr:`num_features`, :meth:`generate_splits`,
    :meth:`decide` and :meth:`decision_objective`, and may override
    :meth:`decide_for_evaluation` (hard decisions) and :meth:`reference_decide`.

    Class attributes:
        name: the registered task name (names the cache file).
        data_version: bump when generated data or references change for the same options.
        non_data_options: config keys that change neither the data nor the quality references
            (left out of the cache key).
        solve_chunk: instances per solver call when scoring a whole split.
    """

    name: ClassVar[str]
    data_version: ClassVar[int] = 1
    non_data_options: ClassVar[frozenset[str]] = frozenset()
    solve_chunk: ClassVar[int] = 1024

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.decision = PredictThenOptimise(self)
        self._references: dict[str, QualityReference] = {}
        self._target_range: tuple[float, float] = (0.0, 0.0)

    # -- what a subclass provides ------------------------------------------------------------

    @property
    @abstractmethod
    def num_features(self) -> int:
        """F, the features per item."""

    @abstractmethod
    def generate_splits(self) -> dict[str, Batch]:
        """``train``/``val``/``test`` from the data seed: inputs [N, n, F], ``targets["y"]``
        [N, n] and any per-instance problem data in ``context`` (deterministic)."""

    @abstractmethod
    def decide(self, predictions: Tensor, batch: Batch) -> Tensor:
        """Differentiable training decisions [B, ...] from finite predictions [B, n]."""

    @abstractmethod
    def decision_objective(self, decisions: Tensor, batch: Batch) -> Tensor:
        """True objective obj(y, z) per instance [B] of decisions [B, ...]."""

    def decide_for_evaluation(self, predictions: Tensor, batch: Batch) -> Tensor:
        """Decisions scored by evaluation (default: the training decisions)."""
        return self.decide(predictions, batch)

    def reference_decide(self, predictions: Tensor, batch: Batch) -> Tensor:
        """Decisions that define DQ_optimal and DQ_random (default: evaluation decisions)."""
        return self.decide_for_evaluation(predictions, batch)

    # -- spec and training loss --------------------------------------------------------------

    def build_spec(self) -> TaskSpec:
        return TaskSpec(
            input_shape=(self.num_features,),
            heads=(HeadSpec(HEAD, 1),),
            objectives=(ObjectiveSpec("mse", HEAD, ObjectiveKind.CUSTOM, Role.MAIN, target=HEAD),),
            capabilities=frozenset({Capability.DECISION, Capability.VALIDATION}),
            primary_metric="ndq",
            primary_mode="max",
            summary_metrics=("ndq", "mse", "objective"),
        )

    def custom_loss(
        self, objective: ObjectiveSpec, outputs: dict[str, Tensor], batch: Batch
    ) -> Tensor:
        """Per-instance mean squared error over the items [B]."""
        errors = item_values(outputs[HEAD]) - batch.targets[HEAD]
        return errors.square().mean(dim=-1)

    # -- data and references -----------------------------------------------------------------

    def data_options(self) -> dict[str, Any]:
        """The config values the data and the references depend on (the cache key)."""
        options = dataclasses.asdict(self.config)
        return {k: v for k, v in options.items() if k not in self.non_data_options}

    def build_splits(self) -> dict[str, Batch]:
        key = {"version": self.data_version, "options": self.data_options()}
        tensors = cached_tensors(f"decision-{self.name}", key, self._build_tensors)
        splits: dict[str, Batch] = {}
        for split in SPLITS:
            prefix = f"{split}/"
            fields = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            splits[split] = Batch(
                inputs=fields["inputs"],
                targets=_group(fields, "targets/"),
                context=_group(fields, "context/"),
            )
            self._references[split] = QualityReference(
                dq_optimal=float(fields["dq_optimal"]), dq_random=float(fields["dq_random"])
            )
        self._target_range = (float(tensors["target_low"]), float(tensors["target_high"]))
        return splits

    @torch.no_grad()
    def _build_tensors(self) -> dict[str, Tensor]:
        splits = self.generate_splits()
        train_targets = splits["train"].targets[HEAD]
        low, high = float(train_targets.min()), float(train_targets.max())
        tensors = {
            "target_low": torch.tensor(low, dtype=torch.float64),
            "target_high": torch.tensor(high, dtype=torch.float64),
        }
        reference_objective = partial(self.mean_objective, reference=True)
        for index, split in enumerate(SPLITS):
            data = splits[split]
            tensors[f"{split}/inputs"] = data.inputs
            tensors.update({f"{split}/targets/{k}": v for k, v in data.targets.items()})
            tensors.update({f"{split}/context/{k}": v for k, v in data.context.items()})
            seed = 7919 * self.config.data_seed + index  # its own random draws per split
            reference = quality_reference(reference_objective, data, low, high, seed=seed)
            tensors[f"{split}/dq_optimal"] = torch.tensor(reference.dq_optimal, dtype=torch.float64)
            tensors[f"{split}/dq_random"] = torch.tensor(reference.dq_random, dtype=torch.float64)
        return tensors

    def quality_reference(self, split: str) -> QualityReference:
        """DQ_optimal and DQ_random of `split` (built with the data)."""
        self.split(split)  # builds (or loads) the data and the references on first use
        return self._references[split]

    @property
    def target_range(self) -> tuple[float, float]:
        """(min, max) of the training targets: the range of the random predictions."""
        self.split("train")
        return self._target_range

    # -- evaluation --------------------------------------------------------------------------

    @torch.no_grad()
    def mean_objective(self, predictions: Tensor, data: Batch, *, reference: bool = False) -> float:
        """Mean true objective over `data`'s instances of the decisions from `predictions`.

        Args:
            predictions: per-item predictions [N, n] for all N instances of `data`.
            data: the instances (a split).
            reference: use :meth:`reference_decide` instead of :meth:`decide_for_evaluation`.
        """
        check_finite(predictions)
        decide = self.reference_decide if reference else self.decide_for_evaluation
        total = torch.zeros((), dtype=torch.float64, device=predictions.device)
        for start in range(0, len(data), self.solve_chunk):
            chunk = data.index(slice(start, start + self.solve_chunk)).to(predictions.device)
            decisions = decide(predictions[start : start + self.solve_chunk], chunk)
            total += self.decision_objective(decisions, chunk).double().sum()
        return float(total) / len(data)

    @torch.no_grad()
    def predict(
        self, model: torch.nn.Module, split: str, *, device: torch.device, batch_size: int
    ) -> Tensor:
        """The model's per-item predictions [N, n] for every instance of `split`."""
        data = self.split(split)
        was_training = model.training
        model.eval()
        try:
            chunks = [
                item_values(model(data.inputs[start : start + batch_size].to(device))[HEAD])
                for start in range(0, len(data), batch_size)
            ]
        finally:
            model.train(was_training)
        return torch.cat(chunks)

    DECISION_METRICS: ClassVar[dict[str, Direction]] = {
        "mse": "min",
        "objective": "max",
        "ndq": "max",
        "dq_optimal": "none",
        "dq_random": "none",
    }
    """The decision metrics and their directions (every problem here maximises its objective;
    the two ends of the ndq scale describe the split, not the model)."""

    @property
    def metric_directions(self) -> dict[str, Direction]:
        """What :meth:`score` reports (the loss metrics of the spec's one objective, then the
        decision metrics)."""
        return {**supervised_metric_directions(self.spec), **self.DECISION_METRICS}

    def score(self, predictions: Tensor, split: str) -> dict[str, float]:
        """Metrics of per-item predictions [N, n] on `split` (see the module docstring)."""
        data = self.split(split)
        reference = self.quality_reference(split)
        targets = data.targets[HEAD].to(predictions.device)
        mse = float((predictions - targets).square().mean(dim=-1).double().mean())
        objective = self.mean_objective(predictions, data)
        metrics = supervised_metrics(self.spec, {"mse": mse}, {}, {})
        metrics.update(
            mse=mse,
            objective=objective,
            ndq=reference.normalise(objective),
            dq_optimal=reference.dq_optimal,
            dq_random=reference.dq_random,
        )
        return metrics

    def evaluate(
        self, model: torch.nn.Module, split: str, *, device: torch.device, batch_size: int
    ) -> dict[str, float]:
        predictions = self.predict(model, split, device=device, batch_size=batch_size)
        return self.score(predictions, split)


def _group(fields: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in fields.items() if k.startswith(prefix)}
