"""0/1 knapsack for batches of instances that share the item weights and the capacity.

maximise_z vᵀz  s.t. wᵀz ≤ C, z ∈ {0, 1}ⁿ

:func:`solve_knapsack` is exact: dynamic programming over the capacity in integer units (the
weights are multiples of 0.01, as the generator draws them), vectorised over the batch, one pass per
item, then a vectorised backtrack. :func:`soft_knapsack` is its differentiable relaxation, the
entropy-regularised LP max vᵀz + τ Σ H(z_i) s.t. wᵀz ≤ C, 0 ≤ z ≤ 1, whose solution is
z_i = σ((v_i − λ w_i)/τ) with the price λ ≥ 0 of the capacity found by bisection (λ = 0 when
the capacity does not bind); its backward pass is the implicit derivative in closed form
(soft top-k is the case w = 1 with an equality).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

UNITS_PER_WEIGHT = 100
"""Capacity units per unit of weight: weights are multiples of 0.01."""
BISECTION_STEPS = 80


def weight_units(weights: Tensor) -> Tensor:
    """The weights [n] in integer units; ValueError unless they are positive multiples of 0.01."""
    units = torch.round(weights.double() * UNITS_PER_WEIGHT)
    if (units <= 0).any() or (units - weights.double() * UNITS_PER_WEIGHT).abs().max() > 1e-3:
        raise ValueError("knapsack weights must be positive multiples of 0.01")
    return units.long()


def _check(values: Tensor, weights: Tensor) -> None:
    if values.dim() != 2 or values.shape[-1] != weights.shape[-1]:
        raise ValueError(
            f"knapsack values must be [B, {weights.shape[-1]}], got {tuple(values.shape)}"
        )
    if not torch.isfinite(values).all():
        raise ValueError("knapsack values contain NaN or inf")


def solve_knapsack(values: Tensor, weights: Tensor, capacity: float) -> Tensor:
    """The optimal 0/1 selections [B, n] for item values [B, n] (ties: the DP's first best)."""
    _check(values, weights)
    units = weight_units(weights).tolist()
    room = round(capacity * UNITS_PER_WEIGHT)
    gains = values.detach().double()
    best = torch.zeros(len(values), room + 1, dtype=torch.float64, device=values.device)
    taken = []
    for item, size in enumerate(units):  # best[:, c]: the best value within capacity c so far
        with_item = torch.full_like(best, -torch.inf)
        if size <= room:
            with_item[:, size:] = best[:, : room + 1 - size] + gains[:, item : item + 1]
        take = with_item > best
        best = torch.where(take, with_item, best)
        taken.append(take)
    chosen = torch.zeros_like(gains)
    left = torch.full((len(values),), room, dtype=torch.long, device=values.device)
    rows = torch.arange(len(values), device=values.device)
    for item in reversed(range(len(units))):
        pick = taken[item][rows, left]
        chosen[:, item] = pick.double()
        left = left - pick.long() * units[item]
    return chosen.to(values.dtype)


class _SoftKnapsack(torch.autograd.Function):
    """z = σ((v − λw)/τ), λ ≥ 0 the smallest price with wᵀz ≤ C. Backward, with s = z(1 − z):
    dL/dv = (s∘g − s∘w · (Σ s w g)/(Σ s w²)) / τ where the capacity binds, s∘g/τ where not."""

    @staticmethod
    def forward(
        ctx: Any, values: Tensor, weights: Tensor, capacity: float, temperature: float
    ) -> Tensor:
        v, w = values.double(), weights.double().to(values.device)
        free = torch.sigmoid(v / temperature)
        binds = (free * w).sum(-1, keepdim=True) > capacity
        low = torch.zeros_like(v[:, :1])
        high = (v / w).max(dim=-1, keepdim=True).values.clamp_min(0) + 60 * temperature / w.min()
        for _ in range(BISECTION_STEPS):
            middle = (low + high) / 2
            over = (torch.sigmoid((v - middle * w) / temperature) * w).sum(-1, keepdim=True)
            too_much = over > capacity
            low = middle.where(too_much, low)
            high = high.where(too_much, middle)
        price = torch.where(binds, (low + high) / 2, torch.zeros_like(low))
        selection = torch.sigmoid((v - price * w) / temperature)
        ctx.save_for_backward(selection, w, binds)
        ctx.temperature = temperature
        return selection.to(values.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        selection, w, binds = ctx.saved_tensors
        slope = selection * (1 - selection)
        g = grad.double()
        spread = (slope * w * w).sum(-1, keepdim=True).clamp_min(1e-300)
        correction = slope * w * (slope * w * g).sum(-1, keepdim=True) / spread
        result = slope * g - torch.where(binds, correction, torch.zeros_like(correction))
        return (result / ctx.temperature).to(grad.dtype), None, None, None


def soft_knapsack(values: Tensor, weights: Tensor, capacity: float, temperature: float) -> Tensor:
    """Differentiable knapsack selections [B, n] in [0, 1] with wᵀz ≤ C (→ the LP relaxation's
    optimum as τ → 0)."""
    _check(values, weights)
    if temperature <= 0:
        raise ValueError(f"soft knapsack temperature={temperature} must be > 0")
    selection: Tensor = _SoftKnapsack.apply(values, weights, capacity, temperature)
    return selection
