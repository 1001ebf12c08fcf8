"""Equal weighting as a rule for any training loop: minimise the mean of the selected losses.

θ ← θ − η ∇θ (1/|S|) Σ_{k∈S} L_k(θ), with S all objectives by default. Restricting S to the main
objective gives the *main-only* baseline of auxiliary-task papers.

    rule = EqualWeighting(num_objectives=2)       # or selected=[0] for main-only
    optimizer.zero_grad()
    rule.backward(torch.stack([loss_a, loss_b]))
    optimizer.step()
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from twcore.contract.weighting import HeldWeights


class EqualWeighting(HeldWeights):
    """Weights [K]: 1/|S| on the selected objectives (all if none are selected), 0 elsewhere.

    Args:
        num_objectives: K.
        selected: indices of the objectives to train on (default: all).
    """

    def __init__(self, num_objectives: int, selected: Sequence[int] = ()) -> None:
        super().__init__(num_objectives)
        chosen = set(selected) or set(range(num_objectives))
        outside = sorted(i for i in chosen if not 0 <= i < num_objectives)
        if outside:
            raise ValueError(f"selected objectives {outside} are not in 0..{num_objectives - 1}")
        mask = torch.tensor(
            [float(i in chosen) for i in range(num_objectives)], dtype=torch.float64
        )
        self.weights = mask / mask.sum()
