"""CAGrad (Liu et al., NeurIPS 2021, "Conflict-Averse Gradient Descent for Multi-task
Learning"): the direction in a ball around the average gradient that most improves the worst
objective.

With g_0 = (1/K) Σ_k g_k the average gradient on the shared tensors (paper eq. 4):

    max_d min_k g_kᵀ d   subject to   ‖d − g_0‖ ≤ c ‖g_0‖

Its dual (eq. 5) is a problem over the simplex, in the Gram matrix M alone:

    w* = argmin_{w ∈ Δ_K} g_wᵀ g_0 + c ‖g_0‖ ‖g_w‖,   g_w = Σ_k w_k g_k
       = argmin_{w ∈ Δ_K} wᵀ M 1/K + c √(1ᵀM1/K²) √(wᵀ M w)

and d* = g_0 + (c ‖g_0‖ / ‖g_w*‖) g_w*, rescaled by 1/(1 + c²) as in the authors' code
(``rescale``: ``1+c^2`` (default), ``1+c`` or ``none``). The step on the shared tensors is
Σ_k a_k g_k with a = (1/K + λ w*) / scale, λ = c‖g_0‖/‖g_w*‖; each objective's own parameters
keep their plain gradient. c = 0 is the average gradient; c = 0.4 is the paper's setting for its
multitask experiments. The step is on the mean scale of g_0, as equal weighting's (the authors'
code multiplies it by K to match a summed loss). With one objective there is no conflict to
avoid, and the step is the plain gradient.

    rule = CAGrad(num_objectives=3, c=0.4)
    optimizer.zero_grad()
    step = rule.backward(torch.stack(losses), shared=list(trunk.parameters()))
    optimizer.step()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from twcore.contract.gram_weighting import GramWeighting
from twcore_method_mtl.simplex import newton_on_simplex

RESCALES = ("1+c^2", "1+c", "none")


def conflict_averse_weights(gram: Tensor, c: float) -> Tensor:
    """w* of CAGrad's dual problem (module docstring) for Gram matrix `gram` [K, K], by
    projected Newton steps on the simplex."""
    size = gram.shape[0]
    scale = float(gram.diagonal().abs().max())
    uniform = torch.full((size,), 1.0 / size, dtype=gram.dtype, device=gram.device)
    if scale == 0.0:
        return uniform
    matrix = gram / scale  # w* does not depend on the scale of the gradients
    average = matrix @ uniform
    radius = c * abs(float(uniform @ average)) ** 0.5
    floor = 1e-20

    def dual(weights: Tensor) -> tuple[float, Tensor, Tensor]:
        product = matrix @ weights
        norm = (weights @ product).clamp_min(floor).sqrt()
        value = float(weights @ average + radius * norm)
        gradient = average + radius * product / norm
        hessian = radius * (matrix / norm - torch.outer(product, product) / norm**3)
        return value, gradient, hessian

    return newton_on_simplex(dual, uniform)


class CAGrad(GramWeighting):
    """Conflict-averse gradient descent (see the module docstring).

    Args:
        num_objectives: K.
        c: the radius of the ball around the average gradient, relative to its norm (≥ 0).
        rescale: divide the direction by ``1+c^2`` (default), ``1+c``, or not at all.
    """

    def __init__(self, num_objectives: int, c: float = 0.4, rescale: str = "1+c^2") -> None:
        super().__init__(num_objectives)
        if not c >= 0:
            raise ValueError(f"c={c} must be >= 0")
        if rescale not in RESCALES:
            raise ValueError(f"rescale={rescale!r} is not one of {', '.join(RESCALES)}")
        self.c, self.rescale = c, rescale

    def coefficients(self, gram: Tensor, losses: Tensor) -> tuple[Tensor, dict[str, Any]]:
        size = self.num_objectives
        uniform = torch.full((size,), 1.0 / size, dtype=gram.dtype, device=gram.device)
        if size == 1:
            return torch.ones_like(uniform), {}
        weights = conflict_averse_weights(gram, self.c)
        average_norm = (uniform @ gram @ uniform).clamp_min(0).sqrt()
        worst_norm = (weights @ gram @ weights).clamp_min(0).sqrt()
        if float(worst_norm) > 1e-8 * float(average_norm):  # else the ball's centre will do
            multiplier = self.c * average_norm / worst_norm
        else:
            multiplier = torch.zeros((), dtype=gram.dtype)
        divisor = {"1+c^2": 1 + self.c**2, "1+c": 1 + self.c, "none": 1.0}[self.rescale]
        coefficients = (uniform + multiplier * weights) / divisor
        return coefficients, {"dual_weights": {k: weights[k] for k in range(size)}}
