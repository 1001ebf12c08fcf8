"""IMTL (Liu et al., ICLR 2021, "Towards Impartial Multi-task Learning"): a shared direction
with equal projections on every objective's unit gradient (IMTL-G), on losses whose scales are
learned so that every scaled loss stays near the same value (IMTL-L).

IMTL-G (paper eq. 5–8): with u_k = g_k/‖g_k‖, find α with Σ_k α_k = 1 and

    dᵀ u_1 = dᵀ u_k  for k = 2..K,   d = Σ_k α_k g_k;

the paper's closed form is α_{2:K} = g_1 Uᵀ (D Uᵀ)⁻¹ with rows D_k = g_1 − g_k and
U_k = u_1 − u_k. Every term is an inner product, so it comes from the Gram matrix M. Here the
same conditions are solved as one linear system in α (the K−1 equal-projection rows and
Σ α = 1) with the pseudo-inverse: the closed form when it exists, and the minimum-norm α when
the gradients are degenerate (two identical objectives share their weight instead of one taking
it all).

IMTL-L (eq. 2–4): each loss becomes e^{s_k} L_k − s_k with learned s_k (the optimum makes every
e^{s_k} L_k = 1); IMTL-G then combines the gradients of the scaled losses, so the step on the
original losses has a_k = α_k e^{s_k}, the heads get e^{s_k} ∇L_k, and s follows
∂/∂s_k = e^{s_k} L_k − 1 with its own Adam (``lr``). ``loss_scale=False`` is IMTL-G alone.

    rule = IMTL(num_objectives=3, lr=1e-3)
    optimizer.zero_grad()
    step = rule.backward(torch.stack(losses), shared=list(trunk.parameters()))
    optimizer.step()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from twcore.contract.gram_weighting import GramWeighting
from twcore_method_mtl.learned import LearnedVector


def impartial_coefficients(gram: Tensor) -> Tensor:
    """α [K] (Σ α = 1) whose combination d = Σ α_k g_k has equal projections on every unit
    gradient u_k, from the Gram matrix [K, K] (minimum-norm α when not unique). An objective
    without gradient has no direction to project on: it gets α_k = 0 and the others share."""
    size = gram.shape[0]
    ones = torch.ones(size, dtype=gram.dtype, device=gram.device)
    norms = gram.diagonal().clamp_min(0).sqrt()
    alive = norms > 1e-12 * max(float(norms.max()), 1e-300)
    if int(alive.sum()) <= 1:
        return ones if size == 1 else alive.to(gram.dtype) if bool(alive.any()) else ones / size
    index = alive.nonzero().squeeze(1)
    live = gram[index][:, index]
    projections = live / norms[index]  # [j, k] = g_j · u_k
    # dᵀu_1 − dᵀu_k = Σ_j α_j (g_j·u_1 − g_j·u_k) = 0 for the others, and Σ_j α_j = 1.
    equal = (projections[:, :1] - projections[:, 1:]).T
    system = torch.cat([equal, torch.ones_like(index, dtype=gram.dtype).unsqueeze(0)])
    target = torch.zeros(index.numel(), dtype=gram.dtype, device=gram.device)
    target[-1] = 1.0
    alpha = torch.zeros(size, dtype=gram.dtype, device=gram.device)
    alpha[index] = torch.linalg.pinv(system) @ target
    return alpha


class IMTL(GramWeighting):
    """Impartial multi-task learning (see the module docstring).

    Args:
        num_objectives: K.
        loss_scale: learn the loss scales (IMTL-L; the paper's full IMTL), or use IMTL-G only.
        lr: the learning rate of the loss scales' Adam.
    """

    def __init__(self, num_objectives: int, loss_scale: bool = True, lr: float = 1e-3) -> None:
        super().__init__(num_objectives)
        self.loss_scale = loss_scale
        self.scales = LearnedVector(torch.zeros(num_objectives), lr)

    def coefficients(self, gram: Tensor, losses: Tensor) -> tuple[Tensor, dict[str, Any]]:
        factors = self.scales.value.exp().to(gram) if self.loss_scale else torch.ones_like(losses)
        alpha = impartial_coefficients(gram * torch.outer(factors, factors))
        if self.loss_scale:
            self.scales.step(factors * losses - 1.0)
        self._factors = factors
        logs = {"alpha": {k: alpha[k] for k in range(self.num_objectives)}}
        if self.loss_scale:
            logs["loss_scale"] = {k: factors[k] for k in range(self.num_objectives)}
        return alpha * factors, logs

    def own_coefficients(self, coefficients: Tensor) -> Tensor:
        return self._factors.to(coefficients)

    def state_dict(self) -> dict[str, Any]:
        return {"scales": self.scales.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scales.load_state_dict(state["scales"])
