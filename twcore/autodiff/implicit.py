"""Implicit differentiation: hypergradients through the minimiser of an inner problem.

For an inner problem θ*(φ) = argmin_θ f(θ, φ) and an outer objective F(θ*(φ), φ), the implicit
function theorem (∇θ f(θ*, φ) = 0 for every φ) gives the total derivative

    dF/dφ = ∂F/∂φ − (∂²f/∂φ∂θ)ᵀ H⁻¹ ∂F/∂θ,    H = ∂²f/∂θ²,

without differentiating through the inner optimiser. Only Hessian-vector and vector-Jacobian
products are used, except by the ``"exact"`` solver, which builds H (for tiny inner problems).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from twcore.autodiff.flat import flatten_tensors, unflatten_like
from twcore.autodiff.per_objective import per_objective_grads

SOLVERS = ("cg", "normal_cg", "exact")


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], rhs: Tensor, *, iters: int, tol: float = 0.0
) -> Tensor:
    """Solve A x = rhs by conjugate gradients, starting from x = 0.

    Args:
        matvec: x [P] -> A x [P] for a symmetric positive (semi)definite A.
        rhs: right-hand side [P].
        iters: maximum number of iterations (matvec calls); ≥ 1.
        tol: stop early once the residual norm is at most ``tol * ‖rhs‖``. Checking this needs
            a device-to-host sync each iteration, so with the default 0 no check is made and
            exactly `iters` iterations run.

    Returns:
        x [P]. In exact arithmetic CG converges in at most P iterations. Steps whose
        denominator is exactly zero (a converged or null-space search direction) are skipped
        rather than producing NaN.
    """
    if rhs.dim() != 1:
        raise ValueError(f"rhs must have shape [P], got {tuple(rhs.shape)}")
    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    if not tol >= 0:
        raise ValueError(f"tol must be non-negative, got {tol}")
    solution = torch.zeros_like(rhs)
    residual = rhs.clone()
    direction = residual.clone()
    residual_sq = residual @ residual
    threshold_sq = None
    if tol > 0:
        threshold_sq = (tol * torch.linalg.vector_norm(rhs)) ** 2
        if bool(residual_sq <= threshold_sq):
            return solution
    for _ in range(iters):
        image = matvec(direction)
        step = _safe_div(residual_sq, direction @ image)
        solution = solution + step * direction
        residual = residual - step * image
        new_residual_sq = residual @ residual
        if threshold_sq is not None and bool(new_residual_sq <= threshold_sq):
            break
        direction = residual + _safe_div(new_residual_sq, residual_sq) * direction
        residual_sq = new_residual_sq
    return solution


def hessian_vector_product(
    grad_of_loss: Sequence[Tensor | None], params: Sequence[Tensor], vector: Tensor
) -> Tensor:
    """H v for the Hessian H of a loss with respect to `params`, returned flat [P].

    Args:
        grad_of_loss: the loss's gradients with respect to `params`, one per param, computed
            with ``create_graph=True``. Entries may be None or constant (no dependence on
            `params`): they contribute nothing.
        params: the tensors the gradients were taken with respect to; P elements in total.
        vector: v [P], flattened in the order of `params`.

    The graph of `grad_of_loss` is retained, so the product can be taken repeatedly.
    """
    params = list(params)
    grads = list(grad_of_loss)
    if len(grads) != len(params):
        raise ValueError(f"got {len(grads)} gradients for {len(params)} params")
    pieces = unflatten_like(vector, params)
    live = [
        (grad, piece.to(grad.dtype))
        for grad, piece in zip(grads, pieces, strict=True)
        if grad is not None and grad.requires_grad
    ]
    if not live:
        return torch.zeros_like(vector)
    products = torch.autograd.grad(
        [grad for grad, _ in live],
        params,
        grad_outputs=[piece for _, piece in live],
        retain_graph=True,
        allow_unused=True,
    )
    return flatten_tensors(_zeros_for_none(products, params))


def implicit_hypergradient(
    inner_loss: Tensor,
    outer_loss: Tensor,
    inner_params: Sequence[Tensor],
    outer_params: Sequence[Tensor],
    *,
    solver: str = "cg",
    iters: int = 5,
    ridge: float = 1e-5,
) -> list[Tensor]:
    """Total derivative dF/dφ of the outer loss through the inner problem's minimiser.

    Computes ``∂F/∂φ − (∂²f/∂φ∂θ)ᵀ (H + ridge·I)⁻¹ ∂F/∂θ`` with H = ∂²f/∂θ².

    Args:
        inner_loss: scalar f(θ, φ), evaluated at the current θ (meant to be a near-minimiser)
            with a graph to both θ and φ.
        outer_loss: scalar F(θ, φ) at the same tensors (it may ignore φ, e.g. a validation
            loss of a model trained with learned example weights φ).
        inner_params: θ, the inner variables (P elements in total).
        outer_params: φ, the meta-parameters.
        solver: how to apply (H + ridge·I)⁻¹: ``"cg"`` runs conjugate gradients on
            Hessian-vector products (needs H + ridge·I positive definite); ``"normal_cg"`` runs
            CG on the normal equations (H + ridge·I)² q = (H + ridge·I) v, which also works when
            H is indefinite away from the optimum but squares the condition number;
            ``"exact"`` builds H [P, P] and solves directly, for tiny inner problems.
        iters: CG iterations (each costs one HVP, two for ``"normal_cg"``); unused by
            ``"exact"``.
        ridge: damping added to H; it also regularises directions with no curvature.

    Returns:
        One tensor per outer param, shaped like it (zeros for params F and f do not reach).
        The results carry no graph. The graphs of both losses are retained.

    The mixed term is a vector-Jacobian product, ∂/∂φ (∇θ f · q) with q held constant, so
    ∂²f/∂φ∂θ is never materialised.
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver '{solver}'; valid solvers: {list(SOLVERS)}")
    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    if not (ridge >= 0 and math.isfinite(ridge)):
        raise ValueError(f"ridge must be a finite non-negative number, got {ridge}")
    for name, loss in (("inner_loss", inner_loss), ("outer_loss", outer_loss)):
        if loss.dim() != 0:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(loss.shape)}")
    inner_params = list(inner_params)
    outer_params = list(outer_params)
    if not inner_params or not outer_params:
        raise ValueError("inner_params and outer_params must both be non-empty")

    direct_inner, direct_outer = _outer_partials(outer_loss, inner_params, outer_params)
    inner_grads = _inner_gradient(inner_loss, inner_params)
    rhs = flatten_tensors(direct_inner)
    if solver == "exact":
        correction = _solve_exact(inner_grads, inner_params, rhs, ridge)
    else:
        correction = _solve_cg(inner_grads, inner_params, rhs, ridge, iters, solver)
    mixed = _mixed_vjp(inner_grads, inner_params, outer_params, correction)
    return [direct - term for direct, term in zip(direct_outer, mixed, strict=True)]


def _outer_partials(
    outer_loss: Tensor, inner_params: list[Tensor], outer_params: list[Tensor]
) -> tuple[list[Tensor], list[Tensor]]:
    """(∂F/∂θ, ∂F/∂φ), zeros where F does not depend on a tensor."""
    everything = inner_params + outer_params
    grads: Sequence[Tensor | None]
    if outer_loss.requires_grad:
        grads = torch.autograd.grad(outer_loss, everything, retain_graph=True, allow_unused=True)
    else:
        grads = (None,) * len(everything)
    filled = _zeros_for_none(grads, everything)
    return filled[: len(inner_params)], filled[len(inner_params) :]


def _inner_gradient(inner_loss: Tensor, inner_params: list[Tensor]) -> list[Tensor | None]:
    """∇θ f with a graph, so that it can be differentiated again (HVPs and the mixed term)."""
    if not inner_loss.requires_grad:
        return [None] * len(inner_params)
    return list(torch.autograd.grad(inner_loss, inner_params, create_graph=True, allow_unused=True))


def _solve_cg(
    inner_grads: list[Tensor | None],
    inner_params: list[Tensor],
    rhs: Tensor,
    ridge: float,
    iters: int,
    solver: str,
) -> Tensor:
    def damped_hessian(vector: Tensor) -> Tensor:
        return hessian_vector_product(inner_grads, inner_params, vector) + ridge * vector

    if solver == "cg":
        return conjugate_gradient(damped_hessian, rhs, iters=iters)
    # H + ridge·I is symmetric, so its transpose in the normal equations is itself.
    return conjugate_gradient(
        lambda vector: damped_hessian(damped_hessian(vector)), damped_hessian(rhs), iters=iters
    )


def _solve_exact(
    inner_grads: list[Tensor | None], inner_params: list[Tensor], rhs: Tensor, ridge: float
) -> Tensor:
    # The Hessian is the Jacobian of the flat gradient, so per_objective_grads builds it with
    # one batched backward pass (row i = H e_i), falling back to a loop if batching fails.
    flat_grad = flatten_tensors(_zeros_for_none(inner_grads, inner_params))
    hessian = per_objective_grads(flat_grad, inner_params, retain_graph=True, strategy="auto")
    # Autograd's H is symmetric only up to rounding; symmetrising gives the solve a true one.
    hessian = 0.5 * (hessian + hessian.T)
    identity = torch.eye(hessian.shape[0], dtype=hessian.dtype, device=hessian.device)
    solution: Tensor = torch.linalg.solve(hessian + ridge * identity, rhs.to(hessian.dtype))
    return solution


def _mixed_vjp(
    inner_grads: list[Tensor | None],
    inner_params: list[Tensor],
    outer_params: list[Tensor],
    vector: Tensor,
) -> list[Tensor]:
    """(∂²f/∂φ∂θ)ᵀ v as ∂/∂φ (∇θ f · v), one tensor per outer param."""
    pieces = unflatten_like(vector, inner_params)
    live = [
        (grad, piece.to(grad.dtype))
        for grad, piece in zip(inner_grads, pieces, strict=True)
        if grad is not None and grad.requires_grad
    ]
    if not live:
        return [torch.zeros_like(param) for param in outer_params]
    products = torch.autograd.grad(
        [grad for grad, _ in live],
        outer_params,
        grad_outputs=[piece for _, piece in live],
        retain_graph=True,
        allow_unused=True,
    )
    return _zeros_for_none(products, outer_params)


def _zeros_for_none(grads: Sequence[Tensor | None], like: Sequence[Tensor]) -> list[Tensor]:
    return [
        torch.zeros_like(tensor) if grad is None else grad
        for grad, tensor in zip(grads, like, strict=True)
    ]


def _safe_div(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / denominator, or 0 where the denominator is exactly 0 (no host sync)."""
    nonzero = denominator != 0
    return torch.where(nonzero, numerator / torch.where(nonzero, denominator, 1.0), 0.0)
