"""Nash-MTL (Navon et al., ICML 2022, "Multi-Task Learning as a Bargaining Game"): the Nash
bargaining solution of the objectives over update directions.

The direction d = Σ_k α_k g_k on the shared tensors maximises Σ_k log(g_kᵀ d) in a ball; its
coefficients solve (paper Sec. 3, with M the Gram matrix)

    M α = 1/α  (elementwise),   α > 0,

i.e. every objective's share of the step, α_k g_kᵀ d, is the same. The paper reaches α with a
sequence of convex (CCP) problems in cvxpy; here the same α comes from Newton's method on the
strictly convex ½ αᵀ M α − Σ_k log α_k, whose stationary point is exactly that equation
(checked against cvxpy's bargaining solution in the tests). A small ridge (1e-8 of the mean
squared gradient norm) keeps an objective without gradient from sending its α to infinity; it
adds nothing to d. The direction is clipped to norm ``max_norm`` (the paper's 1.0; 0: no clip).
Each objective's own parameters keep their plain gradient, as LibMTL does (the authors' code
backpropagates Σ α_k L_k, scaling the heads by α_k too). With one objective the step is the
plain gradient.

    rule = NashMTL(num_objectives=3)
    optimizer.zero_grad()
    step = rule.backward(torch.stack(losses), shared=list(trunk.parameters()))
    optimizer.step()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from twcore.contract.gram_weighting import GramWeighting

RIDGE = 1e-8


def bargaining_coefficients(
    gram: Tensor, *, iterations: int = 100, tolerance: float = 1e-14
) -> Tensor:
    """α > 0 with M α = 1/α (Newton on ½αᵀMα − Σ log α, with backtracking that keeps α > 0)."""
    size = gram.shape[0]
    scale = float(gram.diagonal().mean())
    if scale <= 0:
        return torch.ones(size, dtype=gram.dtype, device=gram.device)
    matrix = gram / scale + RIDGE * torch.eye(size, dtype=gram.dtype, device=gram.device)
    alpha = matrix.diagonal().rsqrt()  # the solution when the gradients are orthogonal

    def potential(point: Tensor) -> float:
        return float(0.5 * point @ matrix @ point - point.log().sum())

    value = potential(alpha)
    for _ in range(iterations):
        gradient = matrix @ alpha - 1.0 / alpha
        hessian = matrix + torch.diag(alpha.pow(-2))
        newton = torch.linalg.solve(hessian, gradient)
        decrement = float(gradient @ newton)
        if decrement <= tolerance:
            break
        step = 1.0
        while True:
            candidate = alpha - step * newton
            if bool((candidate > 0).all()):
                candidate_value = potential(candidate)
                if candidate_value <= value - 1e-4 * step * decrement:
                    break
            step *= 0.5
            if step < 1e-12:
                candidate, candidate_value = alpha, value
                break
        if candidate is alpha:
            break
        alpha, value = candidate, candidate_value
    # M/scale · α = 1/α  ⇔  M · (α/√scale) = 1/(α/√scale)
    solution: Tensor = alpha / scale**0.5
    return solution


class NashMTL(GramWeighting):
    """The Nash bargaining direction of the objectives (see the module docstring).

    Args:
        num_objectives: K.
        max_norm: clip the shared direction to this norm (> 0), or 0 for no clipping.
    """

    def __init__(self, num_objectives: int, max_norm: float = 1.0) -> None:
        super().__init__(num_objectives)
        if not max_norm >= 0:
            raise ValueError(f"max_norm={max_norm} must be >= 0")
        self.max_norm = max_norm

    def coefficients(self, gram: Tensor, losses: Tensor) -> tuple[Tensor, dict[str, Any]]:
        if self.num_objectives == 1:
            return torch.ones(1, dtype=gram.dtype), {}
        alpha = bargaining_coefficients(gram)
        norm = float((alpha @ gram @ alpha).clamp_min(0).sqrt())
        clipped = self.max_norm > 0 and norm > self.max_norm
        if clipped:
            alpha = alpha * (self.max_norm / norm)
        return alpha, {"clipped": float(clipped)}
