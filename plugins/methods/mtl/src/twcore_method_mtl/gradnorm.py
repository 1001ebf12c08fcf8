"""GradNorm (Chen et al., ICML 2018, "GradNorm: Gradient Normalization for Adaptive Loss
Balancing in Deep Multitask Networks"): learn loss weights so that every objective's gradient
norm trains at a rate set by how far behind it is.

With w_k the learned weights (Σ w = K), on the shared tensors W (paper Sec. 3.2):

    G_k = ‖∇_W w_k L_k‖ = w_k ‖g_k‖,   Ḡ = mean_k G_k,
    r_k = L̃_k / mean_j L̃_j,  L̃_k = L_k(t) / L_k(0),
    L_grad = Σ_k |G_k − Ḡ r_k^α|      (the target Ḡ r_k^α held constant, as in the paper)

θ takes the step on Σ_k w_k L_k (heads included); w takes an Adam step on ∂L_grad/∂w_k =
sign(G_k − target_k) ‖g_k‖ and is renormalised to Σ w = K. Only the norms ‖g_k‖ are needed: the
diagonal of the Gram matrix (the authors choose W as the last shared layer, LibMTL all shared
parameters; ``shared`` decides). α = 1.5 is the paper's setting for its NYUv2 experiments
(larger α: stronger balancing). L(0) is the first step's losses.

    rule = GradNorm(num_objectives=3, alpha=1.5, lr=1e-3)
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


class GradNorm(GramWeighting):
    """Loss weights learned to balance gradient norms (see the module docstring).

    Args:
        num_objectives: K.
        alpha: α, the asymmetry: how strongly slower objectives get larger gradients (≥ 0).
        lr: the learning rate of the weights' Adam (> 0; the paper trains w with the network's
            optimiser, and the engine plugin defaults to the run's learning rate).
    """

    def __init__(self, num_objectives: int, alpha: float = 1.5, lr: float = 1e-3) -> None:
        super().__init__(num_objectives)
        if not alpha >= 0:
            raise ValueError(f"alpha={alpha} must be >= 0")
        self.alpha = alpha
        self.weights = LearnedVector(torch.ones(num_objectives), lr)
        self.initial_losses: Tensor | None = None

    def coefficients(self, gram: Tensor, losses: Tensor) -> tuple[Tensor, dict[str, Any]]:
        weights = self.weights.value.to(gram)
        if not bool((losses > 0).all()):
            raise ValueError(
                f"GradNorm needs positive losses (their ratios to the first step's set the "
                f"training rates), got {losses.tolist()}"
            )
        if self.initial_losses is None:
            self.initial_losses = losses.clone()
        norms = gram.diagonal().clamp_min(0).sqrt()
        weighted_norms = weights * norms
        relative = losses / self.initial_losses.to(losses).clamp_min(1e-300)
        inverse_rate = relative / relative.mean().clamp_min(1e-300)
        target = weighted_norms.mean() * inverse_rate.pow(self.alpha)
        self.weights.step(torch.sign(weighted_norms - target) * norms)
        updated = self.weights.value.clamp_min(0)
        total = float(updated.sum())
        renormalised = (
            updated * (self.num_objectives / total) if total > 0 else torch.ones_like(updated)
        )
        self.weights.assign(renormalised)
        logs = {"gradient_norm_loss": (weighted_norms - target).abs().sum()}
        return weights, logs

    def own_coefficients(self, coefficients: Tensor) -> Tensor:
        return coefficients

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"weights": self.weights.state_dict()}
        if self.initial_losses is not None:
            state["initial_losses"] = self.initial_losses.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights.load_state_dict(state["weights"])
        initial = state.get("initial_losses")
        self.initial_losses = None if initial is None else initial.clone()
