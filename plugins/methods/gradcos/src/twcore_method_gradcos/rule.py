"""GradCos as a rule for any training loop: use an auxiliary loss only as far as its gradient
agrees with the main task's (Du et al., Alg. 1 and 2).

On the parameters the objectives share, with G_main and G_aux,i the gradients of the main and
auxiliary losses:

    weighted:    θ ← θ − α (G_main + Σ_i max(0, cos(G_main, G_aux,i)) · G_aux,i)
    unweighted:  θ ← θ − α (G_main + Σ_i 1[cos(G_main, G_aux,i) > 0] · G_aux,i)

Every other parameter (a task's own head) gets its own objective's gradient, unchanged. The
cosines need only inner products of the gradients: given a Gram source (``gram=``, e.g. a
:class:`~twcore.autodiff.layer_gram.GramRecorder` of the forward pass) they come from the K×K
Gram matrix, and the step is one backward pass of Σ_i w_i L_i to the shared parameters (and of
Σ_i L_i to the heads) — the K gradients are never formed. Without one, all K gradients come
from one vectorised backward pass (one row per objective) and the combined gradient goes
straight into ``.grad``. Both paths give the same step (to rounding). Converges to critical
points of the main loss: at a fixed point with a positive weight, G_main = −c·G_aux would have
a negative cosine, a contradiction.

    rule = GradCos(num_objectives=2, main=0)
    optimizer.zero_grad()
    step = rule.backward(torch.stack([main_loss, aux_loss]), shared=list(trunk.parameters()))
    optimizer.step()
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from twcore.autodiff import (
    accumulate_flat_grad,
    cosine_to,
    cosines_from_gram,
    own_leaves,
    per_objective_grads,
    shared_leaves,
)
from twcore.contract.weighting import GramSource, WeightedStep, Weighting, split_weighted_backward

VARIANTS = ("weighted", "unweighted")


def combine_shared_gradients(
    gradients: Tensor, main_index: int, variant: str
) -> tuple[Tensor, Tensor, Tensor]:
    """The GradCos update direction on the shared parameters.

    Args:
        gradients: [K, P], one row per objective, on the shared parameters.
        main_index: the main objective's row.
        variant: ``weighted`` or ``unweighted``.

    Returns:
        (combined gradient [P], cosines [K] with the main row's, weights [K]; the main
        objective's cosine and weight are 1).
    """
    cosines = cosine_to(gradients[main_index], gradients)
    cosines[main_index] = 1.0
    weights = _weights(cosines, variant)
    return weights @ gradients, cosines, weights


def _weights(cosines: Tensor, variant: str) -> Tensor:
    return cosines.clamp_min(0) if variant == "weighted" else (cosines > 0).to(cosines.dtype)


def weights_from_gram(gram: Tensor, main_index: int, variant: str) -> tuple[Tensor, Tensor]:
    """The cosines [K] with the main objective's gradient and the weights [K] (the main one's
    both 1), from the Gram matrix [K, K] of the gradients on the shared parameters."""
    cosines = cosines_from_gram(gram)[main_index].clone()
    cosines[main_index] = 1.0
    return cosines, _weights(cosines, variant)


class GradCos(Weighting):
    """Auxiliary gradients on the shared parameters kept only as far as they agree with the
    main objective's (see the module docstring).

    Args:
        num_objectives: K.
        main: the index of the main objective among the K losses.
        variant: ``weighted`` (max(0, cos) · G_aux) or ``unweighted`` (G_aux when cos > 0).
    """

    compares_gradients = True
    uses_gram = True

    def __init__(self, num_objectives: int, main: int, variant: str = "weighted") -> None:
        super().__init__(num_objectives)
        if not 0 <= main < num_objectives:
            raise ValueError(f"main={main} is not an objective index in 0..{num_objectives - 1}")
        if variant not in VARIANTS:
            raise ValueError(f"variant={variant!r} is not one of {', '.join(VARIANTS)}")
        self.main, self.variant = main, variant

    def backward(
        self,
        losses: Tensor,
        shared: Sequence[Tensor] = (),
        *,
        params: Iterable[Tensor] | None = None,
        gram: GramSource | None = None,
    ) -> WeightedStep:
        """Write the GradCos gradient of the shared tensors (default: the parameters two or more
        losses reach) and every other parameter's own gradient (`params` gives their order;
        default: every leaf the losses reach; a parameter no loss reaches gets no gradient, as
        with ``backward``). With `gram` (the Gram matrix of the gradients on `shared`), the
        cosines come from it and the step is one weighted backward pass."""
        self.check_losses(losses)
        shared = list(shared) or shared_leaves(losses)
        if not shared:
            raise ValueError("GradCos needs parameters the objectives share; these share none")
        # In the caller's order; a parameter no loss reaches gets no grad.
        own = own_leaves(losses, shared, params)
        if gram is not None:
            return self._gram_step(losses, gram.gram(losses), shared, own)
        rows = per_objective_grads(losses, [*shared, *own], retain_graph=False)
        size = sum(p.numel() for p in shared)
        combined, cosines, weights = combine_shared_gradients(
            rows[:, :size], self.main, self.variant
        )
        # Own parameters serve one objective each: the sum of the rows is each one's gradient.
        # Both vectors are fresh, so a missing .grad can be a view of them.
        accumulate_flat_grad(shared, combined)
        if own:
            accumulate_flat_grad(own, rows[:, size:].sum(dim=0))
        return self._step(cosines, weights, torch.linalg.vector_norm(combined))

    def _gram_step(
        self, losses: Tensor, gram: Tensor, shared: Sequence[Tensor], own: Sequence[Tensor]
    ) -> WeightedStep:
        cosines, weights = weights_from_gram(gram.detach(), self.main, self.variant)
        split_weighted_backward(losses, weights, shared, own)
        # ‖Σ_i w_i G_i‖² = wᵀ Gram w
        norm = (weights @ gram.detach() @ weights).clamp_min(0).sqrt()
        return self._step(cosines, weights, norm)

    def _step(self, cosines: Tensor, weights: Tensor, norm: Tensor) -> WeightedStep:
        logs = {
            "cosine": {i: cosines[i] for i in range(self.num_objectives) if i != self.main},
            "shared_grad_norm": norm,
        }
        return WeightedStep(weights.detach(), logs)
