"""Decision layers that solve exactly, and the decision metrics every decision task reports.

A :class:`~twcore.contract.task.DecisionLayer` turns a head's predictions into differentiable
decisions z(ŷ) and scores decisions under the true values, obj(y, z) (higher is better). Many
decision-focused losses need more (SPO+, perturbed Fenchel–Young, NCE, learning to rank): the
*exact* optimal decisions for any values, z*(c) = argmax_z obj(c, z), and the true values y of a
batch. A layer offering them is a :class:`SolverDecisionLayer`; a task with one has the
``decision-solver`` capability, and ``linear-decision`` too when obj(y, z) = Σ_i y_i z_i (the
losses built on that identity need it). A layer whose objective is yᵀz − r(z), with a term
r(z) that does not depend on the true values (a portfolio's risk penalty αzᵀΣz, a fixed cost),
says so with an ``affine`` attribute set to True and has ``affine-decision``: SPO+ and the
perturbed Fenchel–Young loss hold for it exactly as for a linear objective (r = 0), because
r(z) = yᵀz − obj(y, z) can be read off the objective under the true values
(:func:`value_independent_term`). A linear layer is affine; a layer without the attribute is
affine only if it is linear.

Layouts. A head's predictions come in one of two layouts, named by :attr:`SolverDecisionLayer.
layout` and accepted by every decision method alike:

- ``per-item`` (:data:`PER_ITEM`): an instance is n items with their own features, inputs
  [B, n, F]; the model runs per item and the head gives [B, n, 1] (or [B, n]);
- ``per-instance`` (:data:`PER_INSTANCE`): an instance is one feature vector, inputs [B, F]; the
  head gives all n values at once, [B, n].

:meth:`SolverDecisionLayer.values` maps either to the values [B, n] that ``solve`` and
``true_values`` use. ``decide`` accepts the head's output as it is, in either layout.

Metrics (stable names, :data:`DECISION_METRICS` with their directions): ``objective`` (mean true
objective of the model's decisions), ``regret`` (mean of obj(y, z*(y)) − obj(y, z*(ŷ))),
``normalised_regret`` (Σ regret ÷ Σ |obj(y, z*(y))|, PyEPO's definition), ``ndq`` (normalised
decision quality, 1 = optimal, 0 = random predictions), and ``dq_optimal``/``dq_random`` (the two
ends of the ndq scale for the split).

The true optima. SPO+, the perturbed Fenchel–Young loss, NCE, learning to rank and the regret
need each instance's exact decisions for its true values, z*(y), which never change. A task
may store them with its data, in each batch's ``context["true_decisions"]``
(:data:`TRUE_DECISIONS`, [B, ...] as ``solve`` returns them), as PyEPO's datasets hold their
``sols``; :func:`true_decisions` then reads them instead of solving again at every step, and
solves where a batch does not carry them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.metrics import Direction
from twcore.contract.spec import Capability
from twcore.contract.task import DecisionLayer

PER_ITEM = "per-item"
PER_INSTANCE = "per-instance"
LAYOUTS = (PER_ITEM, PER_INSTANCE)

OBJECTIVE = "objective"
REGRET = "regret"
NORMALISED_REGRET = "normalised_regret"
NDQ = "ndq"
DQ_OPTIMAL = "dq_optimal"
DQ_RANDOM = "dq_random"

DECISION_METRICS: dict[str, Direction] = {
    OBJECTIVE: "max",
    REGRET: "min",
    NORMALISED_REGRET: "min",
    NDQ: "max",
    DQ_OPTIMAL: "none",
    DQ_RANDOM: "none",
}
"""The decision metrics and their directions (the two ends of the ndq scale describe the split,
not the model)."""

RANDOM_DRAWS = 10
"""Draws of uniform random predictions averaged into DQ_random."""

# Below this gap between optimal and random quality every decision is optimal (e.g. a budget that
# buys every item), so ndq is defined as 1 instead of 0/0.
_DEGENERATE_GAP = 1e-12

TRUE_DECISIONS = "true_decisions"
"""The context key of each instance's stored exact decisions for its true values, z*(y) (code
that replaces a batch's targets must drop it with them)."""


@runtime_checkable
class SolverDecisionLayer(DecisionLayer, Protocol):
    """A decision layer that also solves exactly (the ``decision-solver`` capability).

    Attributes:
        layout: ``per-item`` or ``per-instance`` (see the module docstring).
        linear: whether obj(y, z) = Σ_i y_i z_i for every feasible z (``linear-decision``).

    Optional attribute ``affine`` (see :func:`is_affine`): whether obj(y, z) = yᵀz − r(z) with
    r independent of y (``affine-decision``); decisions are then [B, n] like the values.
    """

    layout: str
    linear: bool

    def values(self, predictions: Tensor) -> Tensor:
        """The per-instance values [B, n] of the head's output (either layout)."""
        ...

    def true_values(self, batch: Batch) -> Tensor:
        """The true values y [B, n] the predictions estimate."""
        ...

    def solve(self, values: Tensor, batch: Batch) -> Tensor:
        """Exact optimal decisions z*(c) = argmax_z obj(c, z) [B, ...] for values c [B, n]
        (the decisions evaluation scores; not differentiated). ValueError for non-finite
        values."""
        ...


def is_affine(layer: SolverDecisionLayer) -> bool:
    """Whether obj(y, z) = yᵀz − r(z) with r independent of y: the layer's ``affine``
    attribute when it has one, else whether it is linear."""
    return bool(getattr(layer, "affine", False)) or bool(layer.linear)


def decision_capabilities(layer: object) -> frozenset[str]:
    """The capabilities a task with decision layer `layer` has because of it."""
    capabilities = {Capability.DECISION}
    if isinstance(layer, SolverDecisionLayer):
        capabilities.add(Capability.DECISION_SOLVER)
        if layer.linear:
            capabilities.add(Capability.LINEAR_DECISION)
        if is_affine(layer):
            capabilities.add(Capability.AFFINE_DECISION)
    return frozenset(capabilities)


def value_independent_term(
    layer: SolverDecisionLayer, decisions: Tensor, batch: Batch, truth: Tensor
) -> Tensor:
    """r(z) = yᵀz − obj(y, z) per instance [B] for an affine layer's decisions [B, ...]
    (flattened to [B, n]) under the true values `truth` [B, n]; zeros for a linear layer (no
    objective evaluated). Not differentiated."""
    rows = decisions.reshape(len(truth), -1).to(truth.dtype)
    if layer.linear:
        return torch.zeros(len(truth), dtype=truth.dtype, device=truth.device)
    with torch.no_grad():
        return (truth * rows).sum(-1) - layer.objective(decisions, batch).to(truth.dtype)


def true_decisions(layer: SolverDecisionLayer, batch: Batch) -> Tensor:
    """z*(y) [B, ...], the exact decisions for the batch's true values (not differentiated):
    the batch's stored ``context["true_decisions"]`` where its task stored them with the data,
    else one exact solve (collective in a data-parallel run, as ``solve`` is)."""
    stored = batch.context.get(TRUE_DECISIONS)
    if stored is not None:
        return stored
    with torch.no_grad():
        return layer.solve(layer.true_values(batch), batch)


@torch.no_grad()
def check_true_decisions(layer: SolverDecisionLayer, batch: Batch, where: str) -> None:
    """ValueError unless the batch's stored ``context["true_decisions"]`` (if any) are shaped as
    the layer's ``solve`` gives them and score what its decisions for the true values score, to
    1e-6 × (1 + |objective|) (an iterative solver's optima of a whole split can differ from a
    batch's in the last digits); `where` names the batch in the message."""
    stored = batch.context.get(TRUE_DECISIONS)
    if stored is None:
        return
    solved = layer.solve(layer.true_values(batch), batch)
    if tuple(stored.shape[1:]) != tuple(solved.shape[1:]):
        raise ValueError(
            f"{where}[{TRUE_DECISIONS!r}]: rows of shape {tuple(stored.shape[1:])}, but the "
            f"decision layer's solve() gives rows of shape {tuple(solved.shape[1:])}"
        )
    best = layer.objective(solved, batch).double()
    scored = layer.objective(stored.to(solved.dtype), batch).double()
    gap = (best - scored).abs()
    if bool((gap > 1e-6 * (1 + best.abs())).any()):
        index = int(gap.argmax())
        raise ValueError(
            f"{where}[{TRUE_DECISIONS!r}]: instance {index} is not the optimum for its true "
            f"values: it scores {float(scored[index]):.6g}, the solver's decisions "
            f"{float(best[index]):.6g}"
        )


def regret(layer: SolverDecisionLayer, values: Tensor, batch: Batch) -> Tensor:
    """obj(y, z*(y)) − obj(y, z*(c)) per instance [B] for values c [B, n] (≥ 0)."""
    with torch.no_grad():
        best = layer.objective(true_decisions(layer, batch), batch)
        chosen = layer.objective(layer.solve(values, batch), batch)
    return best - chosen


def normalised_decision_quality(dq: float, dq_random: float, dq_optimal: float) -> float:
    """(dq − dq_random) / (dq_optimal − dq_random); 1.0 when the two ends coincide."""
    gap = dq_optimal - dq_random
    if abs(gap) <= _DEGENERATE_GAP * max(1.0, abs(dq_optimal)):
        return 1.0
    return (dq - dq_random) / gap


@dataclass(frozen=True)
class QualityReference:
    """The references of one split's decision metrics.

    Attributes:
        dq_optimal: mean objective of decisions made from the true y.
        dq_random: mean objective of decisions made from uniform random predictions.
        optimal_magnitude: mean |objective| of decisions made from the true y (the
            denominator of the normalised regret).
    """

    dq_optimal: float
    dq_random: float
    optimal_magnitude: float

    def metrics(self, objective: float) -> dict[str, float]:
        """The decision metrics of a model whose decisions score `objective` on average."""
        gap = self.dq_optimal - objective
        scale = self.optimal_magnitude
        return {
            OBJECTIVE: objective,
            REGRET: gap,
            NORMALISED_REGRET: gap / scale if scale > 0 else float("nan"),
            NDQ: normalised_decision_quality(objective, self.dq_random, self.dq_optimal),
            DQ_OPTIMAL: self.dq_optimal,
            DQ_RANDOM: self.dq_random,
        }


def random_predictions(
    shape: torch.Size | tuple[int, ...], low: float, high: float, *, seed: int, draws: int
) -> Tensor:
    """`draws` stacked draws of uniform predictions in [low, high], shape [draws, *shape]."""
    generator = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand((draws, *shape), generator=generator)


ObjectivesOf = Callable[[Tensor], Tensor]
"""``values [N, n] -> true objective per instance [N]`` of the decisions the values give."""


def quality_reference(
    objectives_of: ObjectivesOf,
    truth: Tensor,
    low: float,
    high: float,
    *,
    seed: int,
    draws: int = RANDOM_DRAWS,
    optimal: Tensor | None = None,
) -> QualityReference:
    """The references of a split whose true values are `truth` [N, n].

    Args:
        objectives_of: the same function that scores a model's predictions, so that the true
            values score exactly ``dq_optimal`` (ndq exactly 1, regret exactly 0).
        truth: the true values of every instance of the split.
        low, high: the range of the uniform random predictions (that of the training targets).
        optimal: ``objectives_of(truth)`` [N] where it is already computed (with the true
            values' decisions a task stores).
    """
    optimal = (objectives_of(truth) if optimal is None else optimal).double()
    draws_tensor = random_predictions(truth.shape, low, high, seed=seed, draws=draws)
    # One solve per draw, each over the whole split at once (the solvers are batched).
    random = sum(float(objectives_of(d.to(truth.dtype)).double().mean()) for d in draws_tensor)
    return QualityReference(
        dq_optimal=float(optimal.mean()),
        dq_random=random / draws,
        optimal_magnitude=float(optimal.abs().mean()),
    )
