"""MGDA (Sener & Koltun, NeurIPS 2018, "Multi-Task Learning as Multi-Objective Optimization"):
step along the minimum-norm point of the convex hull of the objectives' gradients.

On the shared tensors, with g_k = ∇L_k and M_ij = g_iᵀ g_j:

    α* = argmin_{α ∈ Δ_K} ‖Σ_k α_k g_k‖² = argmin_{α ∈ Δ_K} αᵀ M α          (paper eq. 3)
    θ_shared ← θ_shared − η Σ_k α*_k g_k;   θ_k ← θ_k − η ∇_{θ_k} L_k       (Alg. 2)

The direction decreases every objective to first order unless it is zero, in which case the
point is Pareto-stationary. MGDA-UB (the paper's Sec. 3.3) takes g_k = ∇_z L_k on the shared
representation z instead of the shared parameters (``interaction=features`` in the engine; pass
``shared=[z]`` in your own loop): an upper bound whose solution needs only backward passes
through the heads. ``normalization`` rescales each g_k before solving, as the authors' code
does — ``l2`` by ‖g_k‖, ``loss`` by L_k, ``loss+`` by L_k‖g_k‖ — the weights α* then multiply
the unnormalised losses. The sub-problem is solved to a duality gap of 1e-12 (cvxpy agrees in
the tests), not with the paper's Frank–Wolfe iterations.

    rule = MGDA(num_objectives=3)
    optimizer.zero_grad()
    step = rule.backward(torch.stack(losses), shared=list(trunk.parameters()))
    optimizer.step()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from twcore.contract.gram_weighting import GramWeighting
from twcore_method_mtl.simplex import min_norm_weights

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def normalization_scales(gram: Tensor, losses: Tensor, normalization: str) -> Tensor:
    """The factor s_k each gradient is divided by before solving (1 for ``none``)."""
    norms = gram.diagonal().clamp_min(0).sqrt()
    scales = {
        "none": torch.ones_like(losses),
        "l2": norms,
        "loss": losses.abs(),
        "loss+": losses.abs() * norms,
    }[normalization]
    return torch.where(scales > 0, scales, torch.ones_like(scales))


class MGDA(GramWeighting):
    """Min-norm convex combination of the objectives' gradients (see the module docstring).

    Args:
        num_objectives: K.
        normalization: ``none`` (the paper's algorithm), ``l2``, ``loss`` or ``loss+``.
    """

    def __init__(self, num_objectives: int, normalization: str = "none") -> None:
        super().__init__(num_objectives)
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization={normalization!r} is not one of {', '.join(NORMALIZATIONS)}"
            )
        self.normalization = normalization

    def coefficients(self, gram: Tensor, losses: Tensor) -> tuple[Tensor, dict[str, Any]]:
        scales = normalization_scales(gram, losses, self.normalization)
        normalised = gram / torch.outer(scales, scales)
        weights = min_norm_weights(normalised)
        return weights, {"min_norm": (weights @ normalised @ weights).clamp_min(0).sqrt()}
