"""Small convex problems over the probability simplex Δ_K = {w ≥ 0, Σ w = 1}, in float64.

The gradient-combining rules solve one of these per step for K weights, so the solvers are
written once here and checked against cvxpy in the tests:

- :func:`simplex_qp`: min ½ wᵀAw + bᵀw exactly, by a primal active-set method (a K-by-K
  equality-constrained solve per iteration; at most a few times K iterations);
- :func:`newton_on_simplex`: a smooth convex f by projected Newton steps, each a
  :func:`simplex_qp` on f's local quadratic model, with a backtracking line search, stopped by
  the Frank–Wolfe duality gap (an upper bound on f(w) − min f);
- :func:`min_norm_weights`: MGDA's min-norm point of a convex hull, one :func:`simplex_qp`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Objective = Callable[[Tensor], tuple[float, Tensor, Tensor]]
"""w [K] ↦ (f(w), ∇f(w) [K], ∇²f(w) [K, K])."""


def simplex_qp(quadratic: Tensor, linear: Tensor, *, tolerance: float = 1e-12) -> Tensor:
    """argmin over Δ_K of ½ wᵀ A w + bᵀ w for a positive semi-definite A [K, K] and b [K].

    A primal active-set method from the uniform point: on the free set, the equality-constrained
    minimiser (least squares, so a singular A gives the minimum-norm solution); step towards it
    until an entry would turn negative (that index leaves the free set); at a minimiser on the
    free set, the index with the most negative multiplier joins it, or w is optimal.
    """
    size = linear.shape[0]
    weights = torch.full((size,), 1.0 / size, dtype=linear.dtype, device=linear.device)
    free = torch.ones(size, dtype=torch.bool, device=linear.device)
    scale = max(float(quadratic.abs().max()), float(linear.abs().max()), 1e-300)
    for _ in range(10 * size + 10):
        target = _free_minimiser(quadratic, linear, free)
        direction = target - weights
        if float(direction.abs().max()) <= 1e-14:
            gradient = quadratic @ weights + linear
            level = gradient[free].mean()
            multipliers = torch.where(free, torch.zeros_like(gradient), gradient - level)
            entering = int(multipliers.argmin())
            if float(multipliers[entering]) >= -tolerance * scale:
                break
            free[entering] = True
            continue
        shrinking = free & (direction < 0)
        ratios = torch.where(
            shrinking, -weights / direction.clamp_max(-1e-300), torch.full_like(weights, 2.0)
        )
        step = min(1.0, float(ratios.min()))
        weights = weights + step * direction
        if step < 1.0:
            leaving = int(ratios.argmin())
            free[leaving] = False
            weights[leaving] = 0.0
        weights = weights.clamp_min(0)
        weights = weights / weights.sum()
    return weights


def _free_minimiser(quadratic: Tensor, linear: Tensor, free: Tensor) -> Tensor:
    """The minimiser of ½wᵀAw + bᵀw subject to Σ w = 1 and w = 0 off the free set (KKT system
    solved in the least-squares sense)."""
    index = free.nonzero().squeeze(1)
    count = index.numel()
    system = torch.zeros(count + 1, count + 1, dtype=linear.dtype, device=linear.device)
    system[:count, :count] = quadratic[index][:, index]
    system[:count, count] = 1.0
    system[count, :count] = 1.0
    right = torch.cat([-linear[index], torch.ones(1, dtype=linear.dtype, device=linear.device)])
    solution = torch.linalg.pinv(system) @ right
    weights = torch.zeros_like(linear)
    weights[index] = solution[:count]
    return weights


def newton_on_simplex(
    objective: Objective, start: Tensor, *, iterations: int = 50, tolerance: float = 1e-12
) -> Tensor:
    """argmin over Δ_K of a smooth convex `objective` (value, gradient, Hessian), from `start`.

    Each iteration minimises the local quadratic model on the simplex (:func:`simplex_qp`, with
    a tiny ridge so the model is strictly convex) and backtracks along the way there until f
    decreases enough. Stops when the Frank–Wolfe gap ∇f(w)ᵀw − min_k ∇f(w)_k is at most
    `tolerance` · max(1, |f(w)|).
    """
    current = start.clone()
    value, gradient, hessian = objective(current)
    identity = torch.eye(current.numel(), dtype=current.dtype, device=current.device)
    for _ in range(iterations):
        gap = float(gradient @ current - gradient.min())
        if gap <= tolerance * max(1.0, abs(value)):
            break
        ridge = 1e-12 * max(float(hessian.diagonal().abs().max()), 1e-300)
        model = hessian + ridge * identity
        target = simplex_qp(model, gradient - model @ current)
        direction = target - current
        slope = float(gradient @ direction)
        if slope >= 0:
            break
        step = 1.0
        while step > 1e-12:
            candidate = current + step * direction
            candidate_value, candidate_gradient, candidate_hessian = objective(candidate)
            if candidate_value <= value + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break
        current, value = candidate, candidate_value
        gradient, hessian = candidate_gradient, candidate_hessian
    return current


def min_norm_weights(gram: Tensor) -> Tensor:
    """The weights w ∈ Δ_K of the minimum-norm point of the convex hull of K gradients whose
    Gram matrix is `gram` [K, K]: argmin_w wᵀ M w (MGDA's sub-problem)."""
    scale = float(gram.diagonal().abs().max())
    if scale == 0.0:
        size = gram.shape[0]
        return torch.full((size,), 1.0 / size, dtype=gram.dtype, device=gram.device)
    return simplex_qp(gram / scale, torch.zeros_like(gram[0]))
