"""Exact batched Euclidean projection onto the capped simplex {0 ≤ z ≤ upper, Σ z = total}."""

from __future__ import annotations

import torch
from torch import Tensor


def project_capped_simplex(values: Tensor, total: Tensor | float, upper: float = 1.0) -> Tensor:
    """argmin_z ||z − v||² s.t. 0 ≤ z ≤ upper, Σ z = total, for values [B, n].

    The solution is clamp(v − τ, 0, upper) with one shift τ per row. The clamped sum
    g(τ) = Σ clamp(v_i − τ, 0, upper) is non-increasing and piecewise linear with kinks at the
    2n breakpoints v_i − upper and v_i, so τ is found exactly (no bisection): evaluate g at the
    sorted breakpoints, take the segment where it crosses `total`, interpolate linearly.
    Cost O(B·n²) memory-light tensor ops, fine for the n ≤ a few hundred of the decision tasks.

    Args:
        values: points to project, [B, n].
        total: Σ z, a float or a [B, 1] tensor, in [0, n·upper].
        upper: the box's upper bound (1 for the unit box; 1 with total 1 is the simplex).

    Returns:
        The projections, [B, n], same dtype as `values`.
    """
    breakpoints = torch.cat([values - upper, values], dim=-1).sort(dim=-1).values  # [B, 2n]
    sums = (values.unsqueeze(-2) - breakpoints.unsqueeze(-1)).clamp(0, upper).sum(-1)  # [B, 2n]
    total = torch.as_tensor(total, dtype=values.dtype, device=values.device)
    total = total.reshape(-1, 1) if total.dim() else total
    # g is non-increasing along the sorted breakpoints: g(first) = n·upper ≥ total ≥ 0 = g(last).
    at_or_above = (sums >= total).sum(dim=-1, keepdim=True).clamp(1, breakpoints.shape[-1] - 1)
    left = at_or_above - 1
    t0, t1 = breakpoints.gather(-1, left), breakpoints.gather(-1, at_or_above)
    g0, g1 = sums.gather(-1, left), sums.gather(-1, at_or_above)
    drop = g0 - g1
    fraction = torch.where(drop > 0, (g0 - total) / drop.clamp_min(1e-300), torch.zeros_like(g0))
    shift = t0 + fraction * (t1 - t0)
    return (values - shift).clamp(0, upper)
