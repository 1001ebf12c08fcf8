"""A TensorTask base for predict-then-optimise problems (the ``decision`` capability).

An instance is a set of n items; a model predicts one value per item, a solver turns the
predictions of the whole batch into decisions z*(ŷ), and the decisions are scored by the true
objective obj(y, z). In the per-item layout (the default) each item has F features and the model
runs per item (head ``y``: inputs [B, n, F] -> outputs [B, n, 1]); in the per-instance layout
(``layout = PER_INSTANCE``) an instance is one feature vector and the head predicts all n values
(inputs [B, F] -> outputs [B, n]).

Subclasses generate the splits and say how to decide and how to score; this base class provides
the spec, the ``mse`` training objective, the decision layer, the cached data with its quality
references and the evaluation metrics:

- ``mse``: mean squared error of the predictions over the items of an instance, averaged;
- the decision metrics of :mod:`twcore.contract.decision` over the evaluation decisions (e.g.
  hard top-k): ``objective``, ``regret``, ``normalised_regret``, ``ndq`` (primary),
  ``dq_optimal`` and ``dq_random``;
- plus the usual ``loss/mse``, ``loss``, ``avg_loss``, ``worst_loss``, ``main_loss``.

The decision layer (:class:`PredictThenOptimise`) is a
:class:`~twcore.contract.decision.SolverDecisionLayer` in the task's layout: its exact solver
is the task's evaluation decision, so every task here has the ``decision-solver`` capability
(and ``linear-decision`` where the subclass says its objective is Σ_i y_i z_i).

ndq = (DQ − DQ_random) / (DQ_optimal − DQ_random): DQ_optimal uses the true y as the prediction
(ndq(true y) = 1), DQ_random predictions drawn uniformly from the range of the training targets,
averaged over 10 seeded draws (random predictions give ndq ≈ 0; a model worse than random has
ndq < 0).
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from twcore.autodiff.data_parallel import rows_in_shares
from twcore.contract.batch import Batch
from twcore.contract.data_cache import cached_tensors
from twcore.contract.decision import (
    DECISION_METRICS,
    PER_ITEM,
    TRUE_DECISIONS,
    QualityReference,
    decision_capabilities,
    quality_reference,
)
from twcore.contract.metrics import Direction, supervised_metric_directions, supervised_metrics
from twcore.contract.spec import Capability, HeadSpec, ObjectiveKind, ObjectiveSpec, Role, TaskSpec
from twcore.contract.task import TensorTask

HEAD = "y"
"""The prediction head (and target key) of every decision task."""

SPLITS = ("train", "val", "test")
REFERENCES_VERSION = 3
"""Bump when what the cached references hold changes (2: the normalised regret's scale; 3: each
instance's exact decisions for its true values, ``context["true_decisions"]``)."""


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
    """The decision layer of a :class:`DecisionTask`, a
    :class:`twcore.contract.decision.SolverDecisionLayer` in the task's layout.

    ``decide(predictions [B, n, 1] (per item) or [B, n], batch)`` returns the task's differentiable
    training decisions (e.g. soft top-k) [B, ...]; ``objective(decisions, batch)`` returns the
    true objective obj(y, z) per instance [B] (higher is better); ``solve(values [B, n],
    batch)`` the exact decisions evaluation scores (e.g. hard top-k); ``true_values(batch)``
    the true y [B, n].
    """

    head: str = HEAD

    def __init__(self, task: DecisionTask) -> None:
        self.task = task
        self.layout = task.layout
        self.linear = task.linear_objective
        self.affine = task.linear_objective or task.affine_objective
        self.sign = -1.0 if task.minimise else 1.0  # values are negated costs

    def values(self, predictions: Tensor) -> Tensor:
        return self.sign * item_values(predictions)

    def true_values(self, batch: Batch) -> Tensor:
        return self.sign * batch.targets[HEAD]

    def decide(self, predictions: Tensor, batch: Batch) -> Tensor:
        values = item_values(predictions)
        check_finite(values)
        return self.task.decide(values, batch)

    def solve(self, values: Tensor, batch: Batch) -> Tensor:
        """The exact decisions for `values` [B, n]; in a data-parallel run each process solves
        its share of the instances (:func:`~twcore.autodiff.data_parallel.rows_in_shares`)."""
        check_finite(values)
        signed = self.sign * values.detach()

        def solve_rows(rows: slice) -> Tensor:
            return self.task.decide_for_evaluation(signed[rows], batch.index(rows))

        with torch.no_grad():
            return rows_in_shares(len(signed), solve_rows)

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
        linear_objective: whether obj(y, z) = Σ_i y_i z_i (the ``linear-decision``
            capability: SPO+, perturbed Fenchel–Young and the other losses built on it apply).
        affine_objective: whether obj(y, z) = Σ_i y_i z_i − r(z) with r independent of y (the
            ``affine-decision`` capability: SPO+ and perturbed Fenchel–Young apply).
        layout: ``per-item`` (default) or ``per-instance``; a per-instance task also gives
            :attr:`num_items`.
        minimise: whether the predictions are costs the decisions minimise (the objective is
            still higher-is-better, e.g. −cᵀz); the layer's values are then the negated
            predictions, so that ``solve`` maximises valuesᵀz.
    """

    name: ClassVar[str]
    data_version: ClassVar[int] = 1
    linear_objective: ClassVar[bool] = False
    affine_objective: ClassVar[bool] = False
    layout: ClassVar[str] = PER_ITEM
    minimise: ClassVar[bool] = False
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

    @property
    def num_items(self) -> int:
        """n, the items per instance (the head's width in the per-instance layout)."""
        raise NotImplementedError(f"a {self.layout} decision task gives num_items")

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
        """Decisions scored by evaluation, the exact optimum for the predictions (default: the
        training decisions, where those are exact)."""
        return self.decide(predictions, batch)

    def reference_decide(self, predictions: Tensor, batch: Batch) -> Tensor:
        """Decisions that define DQ_optimal and DQ_random (default: evaluation decisions)."""
        return self.decide_for_evaluation(predictions, batch)

    # -- spec and training loss --------------------------------------------------------------

    def build_spec(self) -> TaskSpec:
        return TaskSpec(
            input_shape=(self.num_features,),
            heads=(HeadSpec(HEAD, 1 if self.layout == PER_ITEM else self.num_items),),
            objectives=(ObjectiveSpec("mse", HEAD, ObjectiveKind.CUSTOM, Role.MAIN, target=HEAD),),
            capabilities=frozenset({Capability.VALIDATION}) | decision_capabilities(self.decision),
            primary_metric="ndq",
            primary_mode="max",
            summary_metrics=("ndq", "normalised_regret", "mse", "objective"),
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
        key = {
            "version": self.data_version,
            "references": REFERENCES_VERSION,
            "options": self.data_options(),
        }
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
                dq_optimal=float(fields["dq_optimal"]),
                dq_random=float(fields["dq_random"]),
                optimal_magnitude=float(fields["optimal_magnitude"]),
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
        for index, split in enumerate(SPLITS):
            data = splits[split]
            tensors[f"{split}/inputs"] = data.inputs
            tensors.update({f"{split}/targets/{k}": v for k, v in data.targets.items()})
            tensors.update({f"{split}/context/{k}": v for k, v in data.context.items()})
            best, optimal = self._true_optima(data)
            tensors[f"{split}/context/{TRUE_DECISIONS}"] = best
            seed = 7919 * self.config.data_seed + index  # its own random draws per split

            def objectives_of(values: Tensor, data: Batch = data) -> Tensor:
                return self.objectives(values, data, reference=True)

            truth = data.targets[HEAD]
            reference = quality_reference(
                objectives_of, truth, low, high, seed=seed, optimal=optimal
            )
            for key in ("dq_optimal", "dq_random", "optimal_magnitude"):
                value = getattr(reference, key)
                tensors[f"{split}/{key}"] = torch.tensor(value, dtype=torch.float64)
        return tensors

    def _true_optima(self, data: Batch) -> tuple[Tensor, Tensor]:
        """z*(y) of every instance of a split and its true objective [N] (float64): the
        reference decisions for the true values. Stored with the data (the losses that need
        z*(y) read it instead of solving at every step), and the objectives are the references'
        DQ_optimal. The reference decisions depend on the data alone (portfolio's solver switch
        is not part of the cache key, and its references always take the batched solver)."""
        return self._solved_in_chunks(self.reference_decide, data.targets[HEAD], data)

    def _solved_in_chunks(
        self, decide: Callable[[Tensor, Batch], Tensor], predictions: Tensor, instances: Batch
    ) -> tuple[Tensor, Tensor]:
        """`decide`'s decisions for `predictions` [N, n] and their true objectives [N]
        (float64), solved :attr:`solve_chunk` instances at a time on the predictions' device."""
        decisions, objectives = [], []
        for start in range(0, len(predictions), self.solve_chunk):
            part = slice(start, start + self.solve_chunk)
            chunk = instances.index(part).to(predictions.device)
            chosen = decide(predictions[part], chunk)
            decisions.append(chosen)
            objectives.append(self.decision_objective(chosen, chunk).double())
        return torch.cat(decisions), torch.cat(objectives)

    def quality_reference(self, split: str) -> QualityReference:
        """The references of `split`'s decision metrics (built with the data)."""
        self.split(split)  # builds (or loads) the data and the references on first use
        return self._references[split]

    @property
    def target_range(self) -> tuple[float, float]:
        """(min, max) of the training targets: the range of the random predictions."""
        self.split("train")
        return self._target_range

    # -- evaluation --------------------------------------------------------------------------

    @torch.no_grad()
    def objectives(self, predictions: Tensor, data: Batch, *, reference: bool = False) -> Tensor:
        """True objective per instance [N] (float64) of the decisions from `predictions`.

        Args:
            predictions: predicted values [N, n] for all N instances of `data`.
            data: the instances (a split).
            reference: use :meth:`reference_decide` instead of :meth:`decide_for_evaluation`.
        """
        check_finite(predictions)
        decide = self.reference_decide if reference else self.decide_for_evaluation

        def objectives_of_rows(rows: slice) -> Tensor:
            return self._solved_in_chunks(decide, predictions[rows], data.index(rows))[1]

        # A data-parallel run's processes each solve their share of the instances.
        return rows_in_shares(len(data), objectives_of_rows)

    @torch.no_grad()
    def predict(
        self, model: torch.nn.Module, split: str, *, device: torch.device, batch_size: int
    ) -> Tensor:
        """The model's predicted values [N, n] for every instance of `split`."""
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

    DECISION_METRICS: ClassVar[dict[str, Direction]] = {"mse": "min", **DECISION_METRICS}
    """The prediction error and the decision metrics (:mod:`twcore.contract.decision`)."""

    @property
    def metric_directions(self) -> dict[str, Direction]:
        """What :meth:`score` reports (the loss metrics of the spec's one objective, then the
        decision metrics)."""
        return {**supervised_metric_directions(self.spec), **self.DECISION_METRICS}

    def score(self, predictions: Tensor, split: str) -> dict[str, float]:
        """Metrics of predicted values [N, n] on `split` (see the module docstring)."""
        data = self.split(split)
        reference = self.quality_reference(split)
        targets = data.targets[HEAD].to(predictions.device)
        mse = float((predictions - targets).square().mean(dim=-1).double().mean())
        objective = float(self.objectives(predictions, data).mean())
        metrics = supervised_metrics(self.spec, {"mse": mse}, {}, {})
        metrics.update(mse=mse, **reference.metrics(objective))
        return metrics

    def evaluate(
        self, model: torch.nn.Module, split: str, *, device: torch.device, batch_size: int
    ) -> dict[str, float]:
        predictions = self.predict(model, split, device=device, batch_size=batch_size)
        return self.score(predictions, split)


def split_sizes(config: Any) -> dict[str, int]:
    """``{"train": …, "val": …, "test": …}`` from a config's ``*_size`` options."""
    return {split: getattr(config, f"{split}_size") for split in SPLITS}


def cut_splits(sizes: dict[str, int], instances: Batch) -> dict[str, Batch]:
    """Consecutive slices of `instances` (every split's, in `sizes` order), one per split."""
    splits, start = {}, 0
    for split, size in sizes.items():
        splits[split] = instances.index(slice(start, start + size))
        start += size
    return splits


def _group(fields: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in fields.items() if k.startswith(prefix)}
