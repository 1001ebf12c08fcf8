"""The implicit-function step shared by the solvers.

At a solution z* of max f(z; θ) over {box, Σ z = c}, with free (strictly interior) set F, the
KKT conditions on F are ∇_F f(z*; θ) = ν·1 and Σ z_F = const. Differentiating them gives
dz_F = −K⁻¹ [∂_θ ∇_F f dθ; 0] with K = [[H_FF, 1], [1ᵀ, 0]] (H = ∇²_z f). We obtain exactly that
derivative, without unrolling the iterations, by returning z* + Δ where Δ solves
K [Δ; −ν] = [−∇_F f(z*; θ) + mean; 0] with z* detached: at the optimum Δ = 0 (to solver
precision), and autograd through ∇f(z*; θ) gives the implicit gradient. Fixed variables get
identity rows, so the whole batch is one ``torch.linalg.solve``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def bordered_system(matrix: Tensor, free: Tensor) -> Tensor:
    """K = [[M_FF, 1_F], [1_Fᵀ, 0]] embedded in [B, n+1, n+1] for M [B, n, n] and a mask of the
    free set F [B, n]: rows and columns off F are identity rows (those variables stay fixed), so
    one batched ``torch.linalg.solve`` handles free sets of every size. A row with no free
    variable gets a 1 in the corner (its system stays invertible and its step is 0)."""
    batch, n = free.shape
    mask = free.to(matrix.dtype)
    system = matrix.new_zeros(batch, n + 1, n + 1)
    system[:, :n, :n] = matrix * mask[:, :, None] * mask[:, None, :] + torch.diag_embed(1 - mask)
    system[:, :n, n] = mask
    system[:, n, :n] = mask
    system[:, n, n] = (mask.sum(dim=-1) == 0).to(matrix.dtype)
    return system


def newton_kkt_step(
    solution: Tensor, free: Tensor, gradient: Tensor, hessian: Tensor, *, move: bool = False
) -> Tensor:
    """z* carrying the implicit gradient, for solution [B, n] (detached), free mask [B, n], ∇f
    [B, n] (with the graph to the problem data) and ∇²f [B, n, n]; see the module docstring.

    With `move`, the value is z* + Δ (a Newton step, used to polish an active set); otherwise
    the value stays z* exactly and only the gradient of Δ is attached, so a solution that is
    not yet exactly stationary is never moved by an ill-conditioned step.
    """
    batch, n = solution.shape
    mask = free.to(solution.dtype)
    # A tiny negative ridge keeps H_FF invertible at flat directions without moving Δ.
    curvature = hessian - 1e-10 * torch.eye(n, dtype=hessian.dtype, device=hessian.device)
    system = bordered_system(curvature.to(solution.dtype), free)
    right = torch.cat([-gradient * mask, gradient.new_zeros(batch, 1)], dim=-1)
    step = torch.linalg.solve(system, right.unsqueeze(-1)).squeeze(-1)[:, :n]
    return solution + step if move else solution + (step - step.detach())
