"""GradCos as a rule for any training loop: use an auxiliary loss only as far as its gradient
agrees with the main task's (Du et al., Alg. 1 and 2).

On the parameters the objectives share, with G_main and G_aux,i the gradients of the main and
auxiliary losses:

    weighted:    θ ← θ − α (G_main + Σ_i max(0, cos(G_main, G_aux,i)) · G_aux,i)
    unweighted:  θ ← θ − α (G_main + Σ_i 1[cos(G_main, G_aux,i) > 0] · G_aux,i)

Every other parameter (a task's own head) gets its own objective's gradient, unchanged. The
cosines need only inner products of the gradients: given a Gram source (``gram=``, e.g. a
:class:`~twcore.autodiff.layer_gram.GramRecorder` of the forward pass) they come from the K×K
Gram matrix, and the step's Σ_i w_i ∇L_i on the shared parameters from what computing it left
(a recorder's ``weighted_gradients``; the heads' Σ_i L_i from its pass through them, where it
can give it, else one backward pass of Σ_i L_i to the heads) — the K gradients are never
formed. Without one, all K gradients come
from one vectorised backward pass (one row per objective) and the combined gradient goes
straight into ``.grad``. Both paths give the same step (to rounding); they are
:class:`~twcore.contract.gram_weighting.GramWeighting`'s, which every rule that combines the
gradients from their Gram matrix shares (MGDA, PCGrad, CAGrad, ... in ``twcore_method_mtl``).
Converges to critical points of the main loss: at a fixed point with a positive weight,
G_main = −c·G_aux would have a negative cosine, a contradiction.

    rule = GradCos(num_objectives=2, main=0)
    optimizer.zero_grad()
    step = rule.backward(torch.stack([main_loss, aux_loss]), shared=list(trunk.parameters()))
    optimizer.step()
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from twcore.autodiff import cosine_to, cosines_from_gram
from twcore.contract.gram_weighting import GramWeighting

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


class GradCos(GramWeighting):
    """Auxiliary gradients on the shared parameters kept only as far as they agree with the
    main objective's (see the module docstring).

    The cosines come from the Gram matrix of the gradients on the shared tensors, however
    :class:`~twcore.contract.gram_weighting.GramWeighting` gets it (a recorded forward pass,
    the gradient rows, or a shared representation); each objective's own parameters keep their
    own gradient.

    Args:
        num_objectives: K.
        main: the index of the main objective among the K losses.
        variant: ``weighted`` (max(0, cos) · G_aux) or ``unweighted`` (G_aux when cos > 0).
    """

    def __init__(self, num_objectives: int, main: int, variant: str = "weighted") -> None:
        super().__init__(num_objectives)
        if not 0 <= main < num_objectives:
            raise ValueError(f"main={main} is not an objective index in 0..{num_objectives - 1}")
        if variant not in VARIANTS:
            raise ValueError(f"variant={variant!r} is not one of {', '.join(VARIANTS)}")
        self.main, self.variant = main, variant

    def coefficients(self, gram: Tensor, losses: Tensor) -> tuple[Tensor, dict[str, Any]]:
        cosines, weights = weights_from_gram(gram, self.main, self.variant)
        values = cosines.tolist()  # one read instead of K − 1 indexings
        auxiliary = {i: values[i] for i in range(self.num_objectives) if i != self.main}
        return weights, {"cosine": auxiliary}
