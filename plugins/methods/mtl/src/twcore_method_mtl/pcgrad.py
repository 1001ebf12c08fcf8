"""PCGrad (Yu et al., NeurIPS 2020, "Gradient Surgery for Multi-Task Learning"): project each
objective's gradient off the normal plane of every gradient it conflicts with.

For each objective i, in a random order of the others j (Alg. 1):

    if g_i^PC · g_j < 0:   g_i^PC ← g_i^PC − (g_i^PC · g_j / ‖g_j‖²) g_j

starting from g_i^PC = g_i (each projection is against the *original* g_j), and the step on the
shared tensors is Σ_i g_i^PC. Every g_i^PC stays a combination Σ_j C_ij g_j of the original
gradients, and each projection needs only inner products, so the rule tracks the K×K matrix C
from the Gram matrix M: g_i^PC · g_j = (C M)_ij. All objectives project at once (one vectorised
update per position in their orders); the step is Σ_k a_k g_k with a = 1ᵀC. Each objective's
own parameters keep their plain gradient. The random orders come from the rule's own generator
(``seed``), saved with its state.

    rule = PCGrad(num_objectives=3, seed=0)
    optimizer.zero_grad()
    step = rule.backward(torch.stack(losses), shared=list(trunk.parameters()))
    optimizer.step()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from twcore.contract.gram_weighting import GramWeighting


def projection_orders(num_objectives: int, generator: torch.Generator) -> Tensor:
    """[K, K−1]: row i is a random order of the objectives other than i."""
    keys = torch.rand(num_objectives, num_objectives, generator=generator, dtype=torch.float64)
    keys.fill_diagonal_(2.0)  # sorts each objective itself last, then drops it
    return keys.argsort(dim=1)[:, : num_objectives - 1]


def surgery_coefficients(gram: Tensor, orders: Tensor) -> tuple[Tensor, int]:
    """C [K, K] with g_i^PC = Σ_j C_ij g_j after PCGrad's projections in `orders` [K, K−1], and
    the number of projections made (conflicts met)."""
    size = gram.shape[0]
    combination = torch.eye(size, dtype=gram.dtype, device=gram.device)
    rows = torch.arange(size, device=gram.device)
    squared_norms = gram.diagonal()
    projections = 0
    for position in range(orders.shape[1]):
        other = orders[:, position]
        dots = (combination * gram[:, other].T).sum(dim=1)  # g_i^PC · g_{other_i}
        conflict = (dots < 0) & (squared_norms[other] > 0)
        step = torch.where(conflict, dots / squared_norms[other].clamp_min(1e-300), 0.0)
        combination[rows, other] -= step
        projections += int(conflict.sum())
    return combination, projections


class PCGrad(GramWeighting):
    """Gradient surgery on conflicting gradients (see the module docstring).

    Args:
        num_objectives: K.
        seed: seed of the generator drawing the projection orders.
    """

    def __init__(self, num_objectives: int, seed: int = 0) -> None:
        super().__init__(num_objectives)
        self.generator = torch.Generator().manual_seed(seed)

    def coefficients(self, gram: Tensor, losses: Tensor) -> tuple[Tensor, dict[str, Any]]:
        orders = projection_orders(self.num_objectives, self.generator)
        combination, projections = surgery_coefficients(gram, orders)
        return combination.sum(dim=0), {"projections": projections}

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
