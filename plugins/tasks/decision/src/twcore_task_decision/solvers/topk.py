"""Hard and soft (differentiable) top-k selection for batches of scores."""

from __future__ import annotations

import torch
from torch import Tensor

BISECTION_STEPS = 80


def _check(scores: Tensor, k: int) -> None:
    if scores.dim() != 2:
        raise ValueError(f"scores must be [B, n], got shape {tuple(scores.shape)}")
    if not 1 <= k <= scores.shape[-1]:
        raise ValueError(f"top-k budget k={k} must be in 1..{scores.shape[-1]} (items)")
    if not torch.isfinite(scores).all():
        raise ValueError("top-k scores contain NaN or inf")


def hard_topk(scores: Tensor, k: int) -> Tensor:
    """0/1 indicator [B, n] of the k largest scores per row (ties broken by lower index)."""
    _check(scores, k)
    order = torch.sort(-scores, dim=-1, stable=True).indices[:, :k]
    return torch.zeros_like(scores).scatter(-1, order, 1.0)


class _SoftTopK(torch.autograd.Function):
    """z = σ((s − ν)/τ) with ν such that Σ z = k: the solution of the entropy-regularised LP
    max sᵀz + τ·Σ H(z_i) s.t. Σ z = k, 0 ≤ z ≤ 1. Backward in closed form:
    dz/ds = (diag(w) − w wᵀ / Σw)/τ with w = z(1 − z)."""

    @staticmethod
    def forward(ctx, scores: Tensor, k: int, temperature: float) -> Tensor:
        values = scores.double()
        low = values.min(dim=-1, keepdim=True).values - 60 * temperature
        high = values.max(dim=-1, keepdim=True).values + 60 * temperature
        for _ in range(BISECTION_STEPS):
            middle = (low + high) / 2
            too_much = torch.sigmoid((values - middle) / temperature).sum(-1, keepdim=True) > k
            low = middle.where(too_much, low)
            high = high.where(too_much, middle)
        selection = torch.sigmoid((values - (low + high) / 2) / temperature)
        ctx.save_for_backward(selection)
        ctx.temperature = temperature
        return selection.to(scores.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (selection,) = ctx.saved_tensors
        weight = selection * (1 - selection)
        dtype, grad = grad.dtype, grad.double()
        total = weight.sum(dim=-1, keepdim=True).clamp_min(1e-300)
        centred = weight * grad - weight * (weight * grad).sum(-1, keepdim=True) / total
        return (centred / ctx.temperature).to(dtype), None, None


def soft_topk(scores: Tensor, k: int, temperature: float) -> Tensor:
    """Differentiable top-k [B, n] in [0, 1], rows summing to k (→ hard_topk as τ → 0)."""
    _check(scores, k)
    if temperature <= 0:
        raise ValueError(f"soft top-k temperature={temperature} must be > 0")
    return _SoftTopK.apply(scores, k, temperature)
