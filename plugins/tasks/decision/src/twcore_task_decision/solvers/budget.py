"""Batched budget allocation: max Σ_j w_j (1 − Π_i (1 − z_i Y_ij)) s.t. 0 ≤ z ≤ 1, Σ z = b.

Structure that decides the algorithm: f is multilinear (affine in each z_i) and along every
exchange direction e_a − e_b its curvature is 2 Σ_j w_j Y_aj Y_bj Π_{i≠a,b}(1 − z_i Y_ij) ≥ 0.
Moving two fractional channels against each other is therefore convex, so some maximiser has at
most one fractional channel: a *vertex* of the capped simplex (⌊b⌋ channels at 1, one at b − ⌊b⌋
when b is fractional). Hence:

- **Exact decisions** (:func:`solve_budget_exact`, used for evaluation and the quality
  references): the best vertex, by enumerating all of them for the whole batch at once (10
  vertices for 5 channels and b = 2). This is the global optimum, not a local one.
- **Differentiable decisions** (:func:`solve_budget`, used for training): at a vertex the decision
  is locally constant in Y, so its gradient is exactly zero. As with top-k, training uses a
  smoothed problem, max f(z) − (γ/2)‖z‖² (γ = ``smoothing``), whose maximiser moves continuously
  with Y. It is solved by projected gradient ascent from the exact vertex decision (step 1/L,
  exact capped-simplex projection), polished by guarded Newton steps on the free set, and
  differentiated exactly through the KKT conditions on the free set (:mod:`.kkt`), no unrolling.
  As γ → 0 it tends to the exact decision.

Predicted reach is clamped to [0, 1] (probabilities).
"""

from __future__ import annotations

import itertools
import math
from functools import cache

import torch
from torch import Tensor

from twcore_task_decision.solvers.kkt import newton_kkt_step
from twcore_task_decision.solvers.projection import project_capped_simplex

ITERATIONS = 200
POLISH_ROUNDS = 4
MAX_VERTICES = 5000
"""Above this many vertices, exact decisions fall back to projected gradient from the uniform
allocation (a KKT point, not necessarily the global optimum)."""
VERTEX_CHUNK_ENTRIES = 2_000_000
"""Instances × vertices × channels × targets evaluated per chunk when enumerating vertices."""


def budget_objective(z: Tensor, reach: Tensor, target_weights: Tensor) -> Tensor:
    """Σ_j w_j (1 − Π_i (1 − z_i Y_ij)) per instance [B] for z [B, m], reach [B, m, n]."""
    untouched = torch.prod(1 - z.unsqueeze(-1) * reach, dim=-2)  # [B, n]
    return (target_weights * (1 - untouched)).sum(dim=-1)


def budget_gradient(z: Tensor, reach: Tensor, weights: Tensor) -> Tensor:
    """∇_z f [B, m]: Σ_j w_j Y_aj Π_{i≠a} (1 − z_i Y_ij)."""
    factors = 1 - z.unsqueeze(-1) * reach  # [B, m, n]
    return (weights.unsqueeze(-2) * reach * _product_without_each(factors)).sum(dim=-1)


def _product_without_each(factors: Tensor) -> Tensor:
    """Π over channels i ≠ a of factors [B, m, n], for every a (no division: exact at zeros)."""
    ones = torch.ones_like(factors[:, :1])
    before = torch.cumprod(torch.cat([ones, factors[:, :-1]], dim=1), dim=1)
    after = torch.cumprod(torch.cat([ones, factors.flip(1)[:, :-1]], dim=1), dim=1).flip(1)
    return before * after


def budget_hessian(z: Tensor, reach: Tensor, weights: Tensor) -> Tensor:
    """∇²_z f [B, m, m]: −Σ_j w_j Y_aj Y_bj Π_{i≠a,b}(1 − z_i Y_ij) off the diagonal, 0 on it."""
    m = z.shape[-1]
    factors = 1 - z.unsqueeze(-1) * reach  # [B, m, n]
    # Π_{i≠a,b}: for each b, the product without a of the factors with factor b set to 1.
    eye = torch.eye(m, dtype=z.dtype, device=z.device)
    replaced = factors.unsqueeze(1) * (1 - eye)[None, :, :, None] + eye[None, :, :, None]
    without_ab = _product_without_each(replaced.flatten(0, 1)).unflatten(0, (-1, m))  # [B,b,a,n]
    terms = weights[:, None, None, :] * reach[:, None, :, :] * reach[:, :, None, :] * without_ab
    return -terms.sum(dim=-1) * (1 - eye)


@cache
def budget_vertices(num_channels: int, budget: float) -> tuple[tuple[float, ...], ...]:
    """Every vertex of {0 ≤ z ≤ 1, Σz = budget}: ⌊b⌋ ones and, for fractional b, one b − ⌊b⌋."""
    whole = math.floor(budget + 1e-12)
    fraction = budget - whole
    vertices = []
    for ones in itertools.combinations(range(num_channels), whole):
        rest = [i for i in range(num_channels) if i not in ones] if fraction > 1e-12 else [None]
        for partial in rest:
            vertex = [1.0 if i in ones else 0.0 for i in range(num_channels)]
            if partial is not None:
                vertex[partial] = fraction
            vertices.append(tuple(vertex))
    return tuple(vertices)


def check_budget_inputs(reach: Tensor, target_weights: Tensor, budget: float) -> Tensor:
    """Target weights as [B, n] (float64); ValueError for bad shapes or values."""
    if reach.dim() != 3:
        raise ValueError(f"reach must be [B, channels, targets], got {tuple(reach.shape)}")
    batch, m, n = reach.shape
    if not torch.isfinite(reach).all():
        raise ValueError("budget reach predictions contain NaN or inf")
    if not 0 < budget <= m:
        raise ValueError(f"budget={budget} must be in (0, {m}] (the number of channels)")
    if target_weights.shape not in ((n,), (batch, n)):
        raise ValueError(f"target_weights must be [{n}] or [{batch}, {n}]")
    if not torch.isfinite(target_weights).all() or (target_weights < 0).any():
        raise ValueError("target_weights must be finite and non-negative")
    return target_weights.detach().double().expand(batch, n)


@torch.no_grad()
def _best_vertex(y: Tensor, weights: Tensor, budget: float) -> Tensor | None:
    """The best vertex per instance [B, m], or None when there are too many vertices."""
    batch, m, n = y.shape
    vertices = budget_vertices(m, float(budget))
    if len(vertices) > MAX_VERTICES:
        return None
    table = torch.tensor(vertices, dtype=y.dtype, device=y.device)  # [C, m]
    chunk = max(1, VERTEX_CHUNK_ENTRIES // (len(vertices) * m * n))
    best = []
    for start in range(0, batch, chunk):
        part_y, part_w = y[start : start + chunk], weights[start : start + chunk]
        untouched = torch.prod(1 - table[None, :, :, None] * part_y[:, None], dim=2)  # [b, C, n]
        values = (part_w[:, None, :] * (1 - untouched)).sum(dim=-1)  # [b, C]
        best.append(table[values.argmax(dim=-1)])
    return torch.cat(best)


@torch.no_grad()
def _projected_gradient(
    z: Tensor, y: Tensor, weights: Tensor, budget: float, smoothing: float
) -> Tensor:
    """Projected gradient ascent on f − (γ/2)‖z‖² from z, step 1/L with L bounding −∇²."""
    # |∇²f_ab| ≤ Σ_j w_j Y_aj Y_bj, a PSD matrix whose largest eigenvalue bounds the curvature.
    bound = torch.einsum("bij,bkj,bj->bik", y, y, weights)
    step = 1.0 / (torch.linalg.eigvalsh(bound)[:, -1:] + smoothing).clamp_min(1e-12)
    for _ in range(ITERATIONS):
        ascent = budget_gradient(z, y, weights) - smoothing * z
        z = project_capped_simplex(z + step * ascent, budget)
    return z


def _smoothed_value(z: Tensor, y: Tensor, weights: Tensor, smoothing: float) -> Tensor:
    return budget_objective(z, y, weights) - 0.5 * smoothing * z.square().sum(dim=-1)


@torch.no_grad()
def _polish(z: Tensor, y: Tensor, weights: Tensor, smoothing: float) -> Tensor:
    """Newton steps on the free set, kept per instance only where they stay feasible and do not
    lower the objective (PG gets close; Newton makes the KKT conditions hold to precision)."""
    ridge = smoothing * torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)
    for _ in range(POLISH_ROUNDS):
        free = (z > 1e-9) & (z < 1 - 1e-9)
        ascent = budget_gradient(z, y, weights) - smoothing * z
        curvature = budget_hessian(z, y, weights) - ridge
        candidate = newton_kkt_step(z, free, ascent, curvature, move=True)
        feasible = ((candidate >= -1e-12) & (candidate <= 1 + 1e-12)).all(dim=-1)
        candidate = candidate.clamp(0, 1)
        better = (
            _smoothed_value(candidate, y, weights, smoothing)
            >= _smoothed_value(z, y, weights, smoothing) - 1e-12
        )
        z = torch.where((feasible & better).unsqueeze(-1), candidate, z)
    return z


def solve_budget_exact(reach: Tensor, target_weights: Tensor, budget: float) -> Tensor:
    """The optimal allocation z [B, m] for reach [B, m, n] (best vertex; no gradient)."""
    weights = check_budget_inputs(reach, target_weights, budget)
    y = reach.detach().double().clamp(0, 1)
    z = _best_vertex(y, weights, budget)
    if z is None:
        start = torch.full(y.shape[:2], budget / y.shape[1], dtype=y.dtype, device=y.device)
        z = _polish(_projected_gradient(start, y, weights, budget, 0.0), y, weights, 0.0)
    return z.to(reach.dtype)


def solve_budget(
    reach: Tensor, target_weights: Tensor, budget: float, smoothing: float = 0.0
) -> Tensor:
    """Allocation z [B, m] of the smoothed problem max f(z) − (γ/2)‖z‖² for reach [B, m, n],
    differentiable with respect to the reach (exact KKT gradient on the free set).

    With smoothing γ = 0 this is the exact (vertex) decision, whose gradient is zero.
    """
    if smoothing < 0:
        raise ValueError(f"smoothing={smoothing} must be >= 0")
    weights = check_budget_inputs(reach, target_weights, budget)
    y = reach.double().clamp(0, 1)
    z = solve_budget_exact(y.detach(), weights, budget).double()
    if smoothing > 0:
        z = _projected_gradient(z, y.detach(), weights, budget, smoothing)
    z = _polish(z, y.detach(), weights, smoothing)
    with torch.no_grad():
        curvature = budget_hessian(z, y, weights) - smoothing * torch.eye(
            z.shape[-1], dtype=z.dtype, device=z.device
        )
    free = (z > 1e-9) & (z < 1 - 1e-9)
    ascent = budget_gradient(z, y, weights) - smoothing * z
    return newton_kkt_step(z, free, ascent, curvature).to(reach.dtype)
