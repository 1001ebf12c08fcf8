"""Normalised decision quality: where a model's decisions sit between random and optimal.

    ndq = (DQ − DQ_random) / (DQ_optimal − DQ_random)

DQ is the mean true decision objective over a split's instances of the decisions made from the
predictions; DQ_optimal uses the true y as the prediction (so ndq(true y) = 1); DQ_random uses
predictions drawn uniformly from the range of the training targets, averaged over 10 seeded draws
(so random predictions give ndq ≈ 0). A model worse than random has ndq < 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from twcore.contract.batch import Batch

RANDOM_DRAWS = 10
"""Draws of uniform random predictions averaged into DQ_random."""

# Below this gap between optimal and random quality every decision is optimal (e.g. a budget that
# buys every item), so ndq is defined as 1 instead of 0/0.
_DEGENERATE_GAP = 1e-12

MeanObjective = Callable[[Tensor, Batch], float]
"""``(predictions [N, n_items], split) -> mean true objective of the decisions they give``."""


@dataclass(frozen=True)
class QualityReference:
    """The two ends of the normalised scale for one split.

    Attributes:
        dq_optimal: mean objective of decisions made from the true y.
        dq_random: mean objective of decisions made from uniform random predictions.
    """

    dq_optimal: float
    dq_random: float

    def normalise(self, dq: float) -> float:
        """ndq of a mean decision objective `dq` (1 = optimal, 0 = random)."""
        return normalised_decision_quality(dq, self.dq_random, self.dq_optimal)


def normalised_decision_quality(dq: float, dq_random: float, dq_optimal: float) -> float:
    """(dq − dq_random) / (dq_optimal − dq_random); 1.0 when the two ends coincide."""
    gap = dq_optimal - dq_random
    if abs(gap) <= _DEGENERATE_GAP * max(1.0, abs(dq_optimal)):
        return 1.0
    return (dq - dq_random) / gap


def random_predictions(
    shape: torch.Size | tuple[int, ...], low: float, high: float, *, seed: int, draws: int
) -> Tensor:
    """`draws` stacked draws of uniform predictions in [low, high], shape [draws, *shape]."""
    generator = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand((draws, *shape), generator=generator)


def quality_reference(
    mean_objective: MeanObjective,
    split: Batch,
    low: float,
    high: float,
    *,
    seed: int,
    draws: int = RANDOM_DRAWS,
) -> QualityReference:
    """DQ_optimal (true y as prediction) and DQ_random (mean over `draws` uniform draws).

    Args:
        mean_objective: the same function that scores a model's predictions, so that the true y
            scores exactly ``dq_optimal`` (ndq exactly 1).
        split: the split's instances; ``split.targets["y"]`` is [N, n_items].
        low, high: the range of the uniform random predictions (that of the training targets).
    """
    truth = split.targets["y"]
    optimal = mean_objective(truth, split)
    draws_tensor = random_predictions(truth.shape, low, high, seed=seed, draws=draws)
    # One solve per draw, each over the whole split at once (the solvers are batched).
    random = sum(mean_objective(draw.to(truth.dtype), split) for draw in draws_tensor) / draws
    return QualityReference(dq_optimal=float(optimal), dq_random=float(random))
