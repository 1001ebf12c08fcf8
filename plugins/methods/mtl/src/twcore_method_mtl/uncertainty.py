"""Uncertainty weighting (Kendall, Gal, Cipolla, CVPR 2018, "Multi-Task Learning Using
Uncertainty to Weigh Losses for Scene Geometry and Semantics"): each objective's weight is a
learned homoscedastic precision.

With s_k = log σ_k² learned (paper eq. 10, the classification form, written with s for
stability as the paper recommends):

    L = Σ_k e^{−s_k} L_k + s_k / 2

θ steps on Σ_k e^{−s_k} L_k (the weights are w_k = e^{−s_k}, 1 at the start), and s takes an
Adam step on ∂L/∂s_k = −e^{−s_k} L_k + 1/2 at the same point, so w_k tends to 1/(2 L_k): large
losses (noisy objectives) are down-weighted. The regression form (1/(2σ²) L + log σ) differs by
a constant factor of the weight, i.e. a shift of s by log 2 that the learning absorbs. The paper
trains s with the network's optimiser; here it has its own Adam (``lr``; the engine plugin
defaults to the run's learning rate).

    rule = UncertaintyWeighting(num_objectives=3, lr=1e-3)
    optimizer.zero_grad()
    step = rule.backward(torch.stack(losses))
    optimizer.step()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from twcore.contract.weighting import LossWeighting
from twcore_method_mtl.learned import LearnedVector


class UncertaintyWeighting(LossWeighting):
    """Weights e^{−s_k} with learned log-variances s (see the module docstring).

    Args:
        num_objectives: K.
        lr: the learning rate of the log-variances' Adam (> 0).
    """

    def __init__(self, num_objectives: int, lr: float = 1e-3) -> None:
        super().__init__(num_objectives)
        self.log_variances = LearnedVector(torch.zeros(num_objectives), lr)

    def loss_weights(self, losses: Tensor) -> tuple[Tensor, dict[str, Any]]:
        log_variances = self.log_variances.value
        weights = (-log_variances).exp()
        self.log_variances.step(0.5 - weights * losses.to(weights))
        return weights, {"log_variance": {k: log_variances[k] for k in range(self.num_objectives)}}

    def state_dict(self) -> dict[str, Any]:
        return {"log_variances": self.log_variances.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.log_variances.load_state_dict(state["log_variances"])
