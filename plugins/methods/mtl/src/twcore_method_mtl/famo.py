"""FAMO (Liu et al., NeurIPS 2023, "FAMO: Fast Adaptive Multitask Optimization"): balance the
objectives' rates of improvement with one backward pass per step.

With logits ξ (z = softmax(ξ)) and losses ℓ_k > 0 (paper Alg. 1):

    c = (Σ_k z_k / ℓ_k)^{-1},   θ ← θ − η Σ_k (c z_k / ℓ_k) ∇ℓ_k      (a step on Σ_k z_k log ℓ_k,
                                                                     rescaled by c)
    δ_k = log ℓ_k(θ_t) − log ℓ_k(θ_{t+1}),   ξ ← ξ − β (J_softmax(ξ)ᵀ δ + γ ξ)

so the objectives that improved most lose weight. ξ takes its step with Adam (learning rate β,
weight decay γ), as in the authors' code; β = 0.025 and γ = 0.001 are the paper's algorithm's
values (the authors' scripts use γ = 0.01 on CelebA). The weights are on the mean scale
(Σ_k c z_k/ℓ_k · ℓ_k = c·1). The authors' code also clips the shared gradient to norm 1 by
default; this rule does not (clip with the run's ``optim.grad_clip``).
δ needs the losses after the step: call :meth:`FAMO.update` with them (the engine plugin
recomputes them on the same batch, as the paper does); a loop that does not is given the next
step's losses instead (a different batch) when it calls ``backward`` again.

    rule = FAMO(num_objectives=3)
    optimizer.zero_grad()
    rule.backward(torch.stack(losses))
    optimizer.step()
    rule.update(torch.stack(losses_after_the_step))     # same batch, no graph needed
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from twcore.contract.weighting import LossWeighting
from twcore_method_mtl.learned import LearnedVector

FLOOR = 1e-8
"""Losses are clamped to at least this before their logarithm (the paper assumes ℓ > 0)."""


class FAMO(LossWeighting):
    """Fast adaptive multitask optimisation (see the module docstring).

    Args:
        num_objectives: K.
        lr: β, the learning rate of the logits' Adam (> 0).
        weight_decay: γ, the logits' weight decay (≥ 0).
    """

    def __init__(self, num_objectives: int, lr: float = 0.025, weight_decay: float = 1e-3) -> None:
        super().__init__(num_objectives)
        self.logits = LearnedVector(torch.zeros(num_objectives), lr, weight_decay)
        self.pending: Tensor | None = None  # the last step's losses, until update()

    def loss_weights(self, losses: Tensor) -> tuple[Tensor, dict[str, Any]]:
        current = losses.to(torch.float64).clamp_min(FLOOR)
        if self.pending is not None:  # update() was not called: the next batch's losses
            self.update(current)
        shares = torch.softmax(self.logits.value, dim=0)
        scale = 1.0 / (shares / current).sum()
        self.pending = current
        logs = {"share": {k: shares[k] for k in range(self.num_objectives)}}
        return scale * shares / current, logs

    def update(self, losses_after: Tensor) -> None:
        """The logits' step from the losses after the model's step (same batch)."""
        if self.pending is None:
            raise RuntimeError("FAMO.update() needs a backward() first")
        after = losses_after.detach().to(torch.float64).clamp_min(FLOOR)
        improvement = self.pending.log() - after.log()
        shares = torch.softmax(self.logits.value, dim=0)
        # Jᵀδ of the softmax: z ⊙ (δ − zᵀδ)
        self.logits.step(shares * (improvement - shares @ improvement))
        self.pending = None

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"logits": self.logits.state_dict()}
        if self.pending is not None:
            state["pending"] = self.pending.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.logits.load_state_dict(state["logits"])
        pending = state.get("pending")
        self.pending = None if pending is None else pending.clone()
