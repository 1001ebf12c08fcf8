"""Batched mean-variance portfolio: argmax_x pᵀx − α xᵀΣx over the probability simplex.

Written as the QP  min ½ xᵀQx − pᵀx  s.t. x ≥ 0, 1ᵀx = 1  with Q = 2αΣ, whose KKT conditions are

    Qx − p − ν1 − λ = 0,   1ᵀx = 1,   x ≥ 0,   λ ≥ 0,   λᵢxᵢ = 0.

**Forward** — a primal-dual active-set method (Hintermüller, Ito & Kunisch 2002), the whole batch
at once: on the current support S solve the equality system [[Q_SS, 1], [1ᵀ, 0]] [x_S; −ν] =
[p_S; 1] (one batched ``torch.linalg.solve``, variables off S are fixed at 0 by identity rows),
compute the multipliers λ = Qx − p − ν1, and move to S' = {i ∈ S: xᵢ > 0} ∪ {i ∉ S: λᵢ < 0}.
When S' = S the KKT conditions hold exactly (up to the linear solve). It typically stops in 3–8
iterations; instances that have not settled after ``ACTIVE_SET_ITERATIONS`` (PDAS can cycle on
matrices that are not M-matrices) are solved by accelerated projected gradient with the exact
simplex projection, then finished by the same active-set step from its support.

**Backward** — exact, from the KKT system on the support (no unrolling): dx_S = first block of
K⁻¹[dp_S; 0] with K = [[Q_SS, 1], [1ᵀ, 0]] symmetric, so the vector-Jacobian product is the first
block of K⁻¹[g_S; 0] and zero off the support. Σ is problem data, not differentiated.
"""

from __future__ import annotations

import torch
from torch import Tensor

from twcore_task_decision.solvers.kkt import bordered_system
from twcore_task_decision.solvers.projection import project_capped_simplex

ACTIVE_SET_ITERATIONS = 30
FALLBACK_ITERATIONS = 3000
KKT_TOLERANCE = 1e-9
SINGULAR_RIDGE = 1e-9


def portfolio_objective(x: Tensor, returns: Tensor, covariance: Tensor, alpha: float) -> Tensor:
    """pᵀx − α xᵀΣx per instance [B] for x, returns [B, n] and Σ [n, n] or [B, n, n]."""
    quadratic = torch.einsum("bi,bij,bj->b", x, covariance.expand(x.shape[0], -1, -1), x)
    return (x * returns).sum(dim=-1) - alpha * quadratic


def check_portfolio_inputs(returns: Tensor, covariance: Tensor, alpha: float) -> Tensor:
    """Validated covariance [B, n, n] (float64); ValueError for bad shapes or values."""
    if returns.dim() != 2:
        raise ValueError(f"returns must be [B, n], got shape {tuple(returns.shape)}")
    batch, n = returns.shape
    if covariance.shape not in ((n, n), (batch, n, n)):
        raise ValueError(
            f"covariance must be [{n}, {n}] or [{batch}, {n}, {n}], got {tuple(covariance.shape)}"
        )
    if not torch.isfinite(returns).all():
        raise ValueError("portfolio returns contain NaN or inf")
    if not torch.isfinite(covariance).all():
        raise ValueError("portfolio covariance contains NaN or inf")
    if not alpha > 0:
        raise ValueError(f"risk aversion alpha={alpha} must be > 0")
    sigma = covariance.detach().double().expand(batch, n, n)
    if (sigma - sigma.transpose(1, 2)).abs().max() > 1e-8 * sigma.abs().max().clamp_min(1):
        raise ValueError("portfolio covariance is not symmetric")
    smallest = torch.linalg.eigvalsh(sigma)[:, 0]
    scale = sigma.diagonal(dim1=1, dim2=2).max(dim=-1).values.clamp_min(1e-12)
    if (smallest < -1e-8 * scale).any():
        raise ValueError(
            "portfolio covariance is not positive semidefinite (smallest eigenvalue "
            f"{float(smallest.min()):.3g})"
        )
    # A singular (PSD) Σ makes the KKT system singular: a ridge far below solver precision.
    singular = (smallest < SINGULAR_RIDGE * scale)[:, None, None]
    identity = torch.eye(n, dtype=sigma.dtype, device=sigma.device)
    ridge = SINGULAR_RIDGE * scale[:, None, None] * identity
    return torch.where(singular, sigma + ridge, sigma)


def _solve_on_support(
    p: Tensor, quadratic: Tensor, support: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """x (zero off S), ν and λ = Qx − p − ν1 for the equality-constrained QP on support S."""
    mask = support.to(p.dtype)
    right = torch.cat([p * mask, p.new_ones(p.shape[0], 1)], dim=-1)
    solution = torch.linalg.solve(bordered_system(quadratic, support), right)
    x, nu = solution[:, :-1] * mask, -solution[:, -1:]
    multipliers = (quadratic @ x.unsqueeze(-1)).squeeze(-1) - p - nu
    return x, nu, multipliers


def _active_set(
    p: Tensor, quadratic: Tensor, support: Tensor, iterations: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Primal-dual active-set iterations from `support`; returns (x, support, settled [B])."""
    settled = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)
    x = p.new_zeros(p.shape)
    for _ in range(iterations):
        x, _, multipliers = _solve_on_support(p, quadratic, support)
        tolerance = KKT_TOLERANCE * (1 + p.abs().amax(dim=-1, keepdim=True))
        new_support = torch.where(support, x > 0, multipliers < -tolerance)
        # A row whose support empties (impossible at an optimum) keeps its best asset.
        empty = ~new_support.any(dim=-1, keepdim=True)
        best = torch.zeros_like(support).scatter(-1, p.argmax(-1, keepdim=True), True)
        new_support = torch.where(empty, best, new_support)
        settled = (new_support == support).all(dim=-1)
        support = new_support
        if settled.all():
            break
    return x, support, settled


def _projected_gradient(p: Tensor, quadratic: Tensor) -> Tensor:
    """Accelerated projected gradient (FISTA) with the exact simplex projection: the slow, sure
    path for the rare instances on which the active-set method cycles."""
    step = 1.0 / torch.linalg.eigvalsh(quadratic)[:, -1:]
    x = project_capped_simplex(p * step, 1.0)
    previous, momentum = x, x
    for t in range(FALLBACK_ITERATIONS):
        gradient = (quadratic @ momentum.unsqueeze(-1)).squeeze(-1) - p
        x = project_capped_simplex(momentum - step * gradient, 1.0)
        momentum = x + (t / (t + 3)) * (x - previous)
        previous = x
    return x


def solve_portfolio_qp(p: Tensor, quadratic: Tensor) -> tuple[Tensor, Tensor]:
    """Optimal weights x [B, n] and their support [B, n] of min ½xᵀQx − pᵀx on the simplex
    (float64 in, no graph). Q must be positive definite."""
    x, support, settled = _active_set(
        p, quadratic, torch.ones_like(p, dtype=torch.bool), ACTIVE_SET_ITERATIONS
    )
    if not settled.all():
        rows = (~settled).nonzero().squeeze(-1)
        rough = _projected_gradient(p[rows], quadratic[rows])
        exact, exact_support, _ = _active_set(p[rows], quadratic[rows], rough > 0, 5)
        x, support = x.index_copy(0, rows, exact), support.index_copy(0, rows, exact_support)
    x = x.clamp_min(0)
    return x / x.sum(dim=-1, keepdim=True), support & (x > 0)


class _PortfolioLayer(torch.autograd.Function):
    """x*(p) with the exact KKT backward on the support (see the module docstring)."""

    @staticmethod
    def forward(ctx, p: Tensor, quadratic: Tensor) -> Tensor:
        x, support = solve_portfolio_qp(p, quadratic)
        ctx.save_for_backward(quadratic, support)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor):
        quadratic, support = ctx.saved_tensors
        mask = support.to(grad.dtype)
        right = torch.cat([grad * mask, grad.new_zeros(grad.shape[0], 1)], dim=-1)
        solution = torch.linalg.solve(bordered_system(quadratic, support), right)
        return solution[:, :-1] * mask, None


def solve_portfolio(returns: Tensor, covariance: Tensor, risk_aversion: float) -> Tensor:
    """argmax_x pᵀx − α xᵀΣx on the simplex for returns [B, n] and Σ [n, n] or [B, n, n].

    Differentiable with respect to the returns (exact implicit gradient). Computes in float64
    and returns the dtype of `returns`. ValueError for non-finite inputs, a non-symmetric or
    singular Σ, or α ≤ 0.
    """
    sigma = check_portfolio_inputs(returns, covariance, risk_aversion)
    x = _PortfolioLayer.apply(returns.double(), 2 * risk_aversion * sigma)
    return x.to(returns.dtype)


def solve_portfolio_cvxpylayers(
    returns: Tensor, covariance: Tensor, risk_aversion: float
) -> Tensor:
    """The same problem through cvxpylayers (reference, and the ``solver=cvxpylayers`` switch).

    Σ enters as a parameter through a square root (DPP needs xᵀΣx = ||Rᵀx||² with Σ = RRᵀ).
    cvxpylayers' default conic solver (SCS via diffcp) is run with tight tolerances so that its
    decisions agree with the exact solver to about 1e-5.
    """
    import cvxpy as cp
    from cvxpylayers.torch import CvxpyLayer

    sigma = check_portfolio_inputs(returns, covariance, risk_aversion)
    n = returns.shape[-1]
    eigenvalues, vectors = torch.linalg.eigh(sigma)
    root = vectors * eigenvalues.clamp_min(0).sqrt().unsqueeze(1)  # Σ = root rootᵀ
    x = cp.Variable(n)
    p = cp.Parameter(n)
    root_t = cp.Parameter((n, n))
    problem = cp.Problem(
        cp.Maximize(p @ x - risk_aversion * cp.sum_squares(root_t @ x)), [x >= 0, cp.sum(x) == 1]
    )
    layer = CvxpyLayer(problem, parameters=[p, root_t], variables=[x])
    (solution,) = layer(
        returns.double(), root.transpose(1, 2).contiguous(), solver_args=CVXPYLAYERS_ARGS
    )
    return solution.to(returns.dtype)


CVXPYLAYERS_ARGS = {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 100_000}
"""Tolerances passed to cvxpylayers' solver (SCS's defaults, 1e-4, are too loose to compare)."""
