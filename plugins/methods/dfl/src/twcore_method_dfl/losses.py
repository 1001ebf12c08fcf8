"""Decision-focused losses from the literature, as plain functions of a decision layer, the
head's predictions and a batch: usable in any training loop, and the rules of this plugin's
engine methods.

Every problem is a maximisation, obj(y, z) higher is better, with exact decisions
z*(c) = argmax_{z ∈ Z} obj(c, z) from the layer's ``solve`` (a
:class:`twcore.contract.decision.SolverDecisionLayer`). ŷ are the predicted values
(``layer.values(predictions)``, [B, n]) and y the true ones. The losses built on a linear
objective obj(y, z) = yᵀz (``layer.linear``) are the maximisation forms of their papers'
cost-minimisation ones (costs c = −y). SPO+ and PFYL also hold, with the same gradients, for an
*affine* objective obj(y, z) = yᵀz − r(z) whose term r does not depend on y (a portfolio's risk
penalty; :func:`twcore.contract.decision.is_affine`): every ``vᵀz`` below becomes
``vᵀz − r(z)`` (the objective the solver maximises under values v), and r(z) is read off as
yᵀz − obj(y, z). For SPO+ the bound still follows from ŷᵀẑ − r(ẑ) ≥ ŷᵀz*(y) − r(z*(y)), and it
stays convex in ŷ (a maximum of affine functions minus an affine one):

- **SPO+** (Elmachtoub & Grigas 2022, "Smart 'Predict, then Optimize'"):
  ℓ(ŷ, y) = max_z (2ŷ − y)ᵀz − 2ŷᵀz*(y) + yᵀz*(y), a convex upper bound of the regret
  yᵀz*(y) − yᵀz*(ŷ); subgradient 2 (z*(2ŷ − y) − z*(y)).
- **PFYL**, perturbed Fenchel–Young (Berthet et al. 2020, "Learning with Differentiable
  Perturbed Optimizers"): ℓ(ŷ, y) = E_Z[max_z (ŷ + σZ)ᵀz] − ŷᵀz*(y), Z ~ N(0, I), estimated
  with M samples; gradient E[z*(ŷ + σZ)] − z*(y). Never negative in expectation; zero only
  when z*(y) is the perturbed optimum almost surely.
- **DPO**, the perturbed optimiser itself (same paper): decisions z̄(ŷ) = E_Z[z*(ŷ + σZ)],
  differentiable with ∂z̄/∂ŷ = E[z*(ŷ + σZ) Zᵀ] / σ (Gaussian smoothing), trained on the
  regret −obj(y, z̄(ŷ)). Needs only an exact solver, not a linear objective.
- **NCE**, noise-contrastive (Mulamba et al. 2021, "Contrastive Losses and Solution Caching
  for Predict-and-Optimize"): ℓ(ŷ, y) = mean_{z ∈ S} (ŷᵀz − ŷᵀz*(y)) over a pool S of
  feasible solutions (:class:`SolutionPool`): the true optimum should score best under ŷ.
- **LTR**, learning to rank (Mandi et al. 2022, "Decision-Focused Learning: Through the Lens
  of Learning to Rank") over the pool: *pointwise* mean_{z ∈ S} (ŷᵀz − yᵀz)², and
  *listwise* the cross-entropy between softmax(yᵀz / τ) and softmax(ŷᵀz / τ) over S.

The pool assumes one feasible set for every instance (as in these papers' benchmarks); it
starts with the true optima of the batches it sees and grows with the solutions of the
predictions (a fraction ``solve_ratio`` of the steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.decision import SolverDecisionLayer, true_decisions, value_independent_term


def _solve_raw(layer: SolverDecisionLayer, values: Tensor, batch: Batch) -> Tensor:
    """Exact decisions for `values` [B, n] in the layer's decision shape (no gradient)."""
    with torch.no_grad():
        return layer.solve(values.detach(), batch)


def _rows(decisions: Tensor, like: Tensor) -> Tensor:
    """Decisions [B, ...] as rows [B, d] in `like`'s dtype (d = n for an affine objective)."""
    return decisions.reshape(len(like), -1).to(like.dtype)


def spo_plus(layer: SolverDecisionLayer, predictions: Tensor, batch: Batch) -> Tensor:
    """SPO+ per instance [B]: with v = 2ŷ − y, ẑ = z*(v) and z* = z*(y),
    ℓ = (vᵀẑ − r(ẑ)) − (vᵀz* − r(z*)) (r = 0 for a linear objective); its gradient in the
    predictions is the SPO+ subgradient 2(ẑ − z*)."""
    predicted = layer.values(predictions)
    truth = layer.true_values(batch).to(predicted.dtype)
    contrast_values = 2 * predicted - truth
    best_raw = true_decisions(layer, batch)
    contrast_raw = _solve_raw(layer, contrast_values, batch)
    best, contrast = _rows(best_raw, predicted), _rows(contrast_raw, predicted)
    penalty_gap = value_independent_term(
        layer, contrast_raw, batch, truth
    ) - value_independent_term(layer, best_raw, batch, truth)
    return (contrast_values * (contrast - best)).sum(-1) - penalty_gap


def perturbations(
    shape: torch.Size, samples: int, generator: torch.Generator, like: Tensor
) -> Tensor:
    """Standard normal noise Z [samples, *shape] (drawn on the CPU from `generator`, so runs
    on any device draw the same), as `like`'s dtype and device."""
    noise = torch.randn((samples, *shape), generator=generator, dtype=torch.float64)
    return noise.to(dtype=like.dtype, device=like.device)


@dataclass(frozen=True)
class _Perturbed:
    """The predicted values ŷ [B, n], noise Z [S, B, n], the exact decisions for every
    perturbation as solved ([S·B, ...], sample-major) and as rows [S, B, d], and the batch
    repeated to match the solved decisions."""

    values: Tensor
    noise: Tensor
    decisions: Tensor
    rows: Tensor
    repeated: Batch


def _perturbed_solutions(
    layer: SolverDecisionLayer,
    predictions: Tensor,
    batch: Batch,
    *,
    sigma: float,
    samples: int,
    generator: torch.Generator,
) -> _Perturbed:
    """z*(ŷ + σ Z_s) for every sample s, in one batched solve."""
    values = layer.values(predictions)
    noise = perturbations(values.shape, samples, generator, values)
    stacked = (values.detach().unsqueeze(0) + sigma * noise).reshape(-1, values.shape[-1])
    repeated = batch.index(torch.arange(len(values), device=batch.inputs.device).repeat(samples))
    with torch.no_grad():
        decisions = layer.solve(stacked, repeated)
    rows = decisions.reshape(samples, len(values), -1).to(values.dtype)
    return _Perturbed(values, noise, decisions, rows, repeated)


def perturbed_fenchel_young(
    layer: SolverDecisionLayer,
    predictions: Tensor,
    batch: Batch,
    *,
    sigma: float,
    samples: int,
    generator: torch.Generator,
) -> Tensor:
    """The perturbed Fenchel–Young loss per instance [B] (M = `samples` draws of σZ):
    mean_s [(ŷ + σZ_s)ᵀz_s − r(z_s)] − (ŷᵀz* − r(z*)) with z_s = z*(ŷ + σZ_s) and z* = z*(y)
    (r = 0 for a linear objective); gradient mean_s z_s − z*."""
    perturbed = _perturbed_solutions(
        layer, predictions, batch, sigma=sigma, samples=samples, generator=generator
    )
    predicted = perturbed.values
    truth = layer.true_values(batch).to(predicted.dtype)
    best_raw = true_decisions(layer, batch)
    best = _rows(best_raw, predicted)
    perturbed_values = predicted.unsqueeze(0) + sigma * perturbed.noise
    loss = (perturbed_values * perturbed.rows).sum(-1).mean(0) - (predicted * best).sum(-1)
    if layer.linear:
        return loss
    sampled_penalty = value_independent_term(
        layer, perturbed.decisions, perturbed.repeated, truth.repeat(samples, 1)
    ).reshape(samples, len(predicted))
    return loss - sampled_penalty.mean(0) + value_independent_term(layer, best_raw, batch, truth)


class _PerturbedOptimum(torch.autograd.Function):
    """z̄ = mean_s z_s with the Gaussian-smoothing Jacobian E[z_s Z_sᵀ] / σ."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        values: Tensor,
        solutions: Tensor,
        noise: Tensor,
        sigma: float,
    ) -> Tensor:
        ctx.save_for_backward(solutions, noise)
        ctx.sigma = sigma  # type: ignore[attr-defined]
        return solutions.mean(0)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor, None, None, None]:
        solutions, noise = ctx.saved_tensors  # type: ignore[attr-defined]
        # d⟨g, z̄⟩/dŷ = mean_s ⟨g, z_s⟩ Z_s / σ
        weights = (grad.unsqueeze(0) * solutions).sum(-1, keepdim=True)
        return (weights * noise).mean(0) / ctx.sigma, None, None, None  # type: ignore[attr-defined]


def perturbed_optimum(
    layer: SolverDecisionLayer,
    predictions: Tensor,
    batch: Batch,
    *,
    sigma: float,
    samples: int,
    generator: torch.Generator,
) -> Tensor:
    """DPO's differentiable decisions z̄(ŷ) = E[z*(ŷ + σZ)] in the layer's decision shape
    [B, ...] (M = `samples` draws)."""
    perturbed = _perturbed_solutions(
        layer, predictions, batch, sigma=sigma, samples=samples, generator=generator
    )
    decisions: Tensor = _PerturbedOptimum.apply(  # type: ignore[no-untyped-call]
        perturbed.values, perturbed.rows, perturbed.noise, sigma
    )
    return decisions.reshape(len(perturbed.values), *perturbed.decisions.shape[1:])


def perturbed_regret(
    layer: SolverDecisionLayer,
    predictions: Tensor,
    batch: Batch,
    *,
    sigma: float,
    samples: int,
    generator: torch.Generator,
) -> Tensor:
    """DPO's loss per instance [B]: −obj(y, z̄(ŷ)) (the regret up to a constant)."""
    decisions = perturbed_optimum(
        layer, predictions, batch, sigma=sigma, samples=samples, generator=generator
    )
    return -layer.objective(decisions, batch)


class SolutionPool:
    """A pool S of distinct feasible solutions [P, n] shared by every instance, at most
    `capacity` (the oldest leave first). Its tensor is the state to checkpoint."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.solutions: Tensor | None = None

    def add(self, solutions: Tensor) -> None:
        """Add the distinct rows of `solutions` [m, n] that the pool lacks."""
        rows = solutions.detach().reshape(len(solutions), -1)
        merged = rows if self.solutions is None else torch.cat([self.solutions, rows])
        unique, inverse = torch.unique(merged, dim=0, return_inverse=True)
        # keep each distinct row's first occurrence, in order of arrival
        first = torch.full((len(unique),), len(merged), dtype=torch.long, device=merged.device)
        first.scatter_reduce_(0, inverse, torch.arange(len(merged), device=merged.device), "amin")
        kept = merged[first.sort().values]
        self.solutions = kept[-self.capacity :]

    def state_dict(self) -> dict[str, Tensor]:
        return {} if self.solutions is None else {"solutions": self.solutions}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.solutions = state.get("solutions")


def noise_contrastive(
    layer: SolverDecisionLayer,
    predictions: Tensor,
    batch: Batch,
    pool: Tensor,
    *,
    best: Tensor | None = None,
) -> Tensor:
    """NCE per instance [B]: mean over the pool S [P, n] of ŷᵀz − ŷᵀz*(y) (`best`: z*(y) as
    rows [B, n], if already solved)."""
    predicted = layer.values(predictions)
    if best is None:
        best = _rows(true_decisions(layer, batch), predicted)
    best = best.to(predicted.dtype)
    pooled = pool.to(predicted.dtype)
    return (predicted @ pooled.T).mean(-1) - (predicted * best).sum(-1)


def rank_pointwise(
    layer: SolverDecisionLayer, predictions: Tensor, batch: Batch, pool: Tensor
) -> Tensor:
    """Pointwise LTR per instance [B]: mean over S of (ŷᵀz − yᵀz)²."""
    predicted = layer.values(predictions)
    truth = layer.true_values(batch).to(predicted.dtype)
    pooled = pool.to(predicted.dtype)
    return ((predicted - truth) @ pooled.T).square().mean(-1)


def rank_listwise(
    layer: SolverDecisionLayer,
    predictions: Tensor,
    batch: Batch,
    pool: Tensor,
    *,
    temperature: float,
) -> Tensor:
    """Listwise LTR per instance [B]: cross-entropy of softmax(ŷᵀz / τ) against
    softmax(yᵀz / τ) over S."""
    predicted = layer.values(predictions)
    truth = layer.true_values(batch).to(predicted.dtype)
    pooled = pool.to(predicted.dtype)
    target = torch.softmax(truth @ pooled.T / temperature, dim=-1)
    return -(target * torch.log_softmax(predicted @ pooled.T / temperature, dim=-1)).sum(-1)
