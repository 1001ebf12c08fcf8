"""Rules that combine the objectives' gradients from their inner products alone.

MGDA, PCGrad, CAGrad, Nash-MTL, IMTL-G, Aligned-MTL and GradNorm all step along
d = Σ_k a_k ∇L_k on the tensors the objectives share, with coefficients a [K] that depend on
the gradients only through their Gram matrix M_ij = ⟨∇L_i, ∇L_j⟩ (and on the losses). Such a
rule subclasses :class:`GramWeighting` and implements :meth:`~GramWeighting.coefficients`; this
class gets M, writes the gradients and reports the step, one way for all of them:

- on shared **parameters** with a Gram source (``gram=``, a
  :class:`~twcore.autodiff.layer_gram.GramRecorder` of the forward pass): M without the K
  gradients, then Σ a_k ∇L_k on the shared parameters from what computing M left (each
  recorded layer's rows times Σ a_k D_k; a source that keeps nothing: one backward pass of
  Σ a_k L_k), and Σ L_k on each objective's own parameters, which keep their own gradient, as
  in the papers' algorithms (from the source's pass through the heads where it offers it,
  :class:`~twcore.contract.weighting.OwnGradientSource`; else one backward pass through them);
- on shared parameters without one: the K gradient rows in one vectorised backward pass, M from
  them, and d written straight into ``.grad``;
- on a shared **representation** (a trunk's output z, non-leaf tensors; MGDA-UB): the K rows of
  ∇_z L_k, each loss differentiated alone through its own head (for losses stacked from K
  scalars; otherwise one vectorised pass through the heads), then a backward pass of
  Σ a_k ∇_z L_k through the trunk, and Σ L_k into the heads.

The three give the same step on the same M (to rounding). A rule whose weights scale the whole
loss, the heads included (GradNorm, IMTL's loss scales), overrides
:meth:`GramWeighting.own_coefficients`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from twcore.autodiff import (
    accumulate_flat_grad,
    own_leaves,
    per_objective_grads,
    shared_leaves,
    unflatten_like,
)
from twcore.contract.weighting import (
    GramSource,
    WeightedStep,
    Weighting,
    gram_weighted_backward,
    own_tensors,
)


class GramWeighting(Weighting):
    """A rule stepping along Σ_k a_k ∇L_k with a = :meth:`coefficients` (M, losses).

    Subclasses implement :meth:`coefficients`; state (tensors and numbers) goes through
    ``state_dict``/``load_state_dict`` as for any :class:`~twcore.contract.weighting.Weighting`.
    """

    compares_gradients = True
    uses_gram = True

    @abstractmethod
    def coefficients(self, gram: Tensor, losses: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """The coefficients a [K] of the step and what the rule measured.

        Args:
            gram: [K, K] float64, M_ij = ⟨∇L_i, ∇L_j⟩ on the shared tensors.
            losses: [K] the step's losses, detached, float64.

        Returns:
            (a [K], logs): numbers, tensors or dicts of those, for the caller to log.
        """

    def own_coefficients(self, coefficients: Tensor) -> Tensor:
        """The factors b [K] of each objective's gradient on its own parameters (a head):
        ones — the plain ∇L_k, as in the gradient-aggregation papers — unless the rule weights
        the whole loss (GradNorm: b = a)."""
        return torch.ones_like(coefficients)

    def backward(
        self,
        losses: Tensor,
        shared: Sequence[Tensor] = (),
        *,
        params: Iterable[Tensor] | None = None,
        gram: GramSource | None = None,
    ) -> WeightedStep:
        """Write the step's gradients (see the module docstring) and return a as the weights.

        Args:
            losses: [K] with their graph.
            shared: the shared parameters, or a shared representation (non-leaf tensors);
                default: the parameters two or more losses reach. Pass all of them (the whole
                trunk): a reached parameter left out counts as an objective's own and gets
                Σ_k b_k ∇L_k, not the rule's combination.
            params: every parameter to receive a gradient, in order (default: the leaves the
                losses reach; one they do not reach gets none, as with ``backward``).
            gram: a source of M on `shared` parameters (not used for a representation).
        """
        self.check_losses(losses)
        shared = list(shared) or shared_leaves(losses)
        if not shared:
            raise ValueError(
                f"{type(self).__name__} needs tensors the objectives share; these share none"
            )
        if not all(tensor.is_leaf for tensor in shared):
            return self._representation_step(losses, shared, own_leaves(losses, shared, params))
        if gram is not None:
            matrix = gram.gram(losses).detach()
            own = own_tensors(losses, shared, params, gram)
            weights, logs = self._coefficients(matrix, losses)
            heads = self.own_coefficients(weights).to(losses)
            gram_weighted_backward(losses, weights, shared, own, gram, own_weights=heads)
            return self._step(weights, matrix, logs)
        own = own_leaves(losses, shared, params)
        rows = per_objective_grads(losses, [*shared, *own], retain_graph=False)
        size = sum(tensor.numel() for tensor in shared)
        matrix = rows[:, :size] @ rows[:, :size].T
        weights, logs = self._coefficients(matrix, losses)
        # Both vectors are fresh, so a missing .grad can be a view of them.
        accumulate_flat_grad(shared, weights.to(rows) @ rows[:, :size])
        if own:
            accumulate_flat_grad(own, self.own_coefficients(weights).to(rows) @ rows[:, size:])
        return self._step(weights, matrix, logs)

    def _representation_step(
        self, losses: Tensor, shared: Sequence[Tensor], own: Sequence[Tensor]
    ) -> WeightedStep:
        # For losses stacked from K scalars, each alone through its own head (a vectorised
        # pass would run every head for every loss).
        rows = per_objective_grads(losses, list(shared), retain_graph=True)  # auto: split
        matrix = rows @ rows.T
        weights, logs = self._coefficients(matrix, losses)
        if own:
            heads = self.own_coefficients(weights).to(losses)
            torch.autograd.backward(
                torch.dot(heads.detach(), losses), inputs=list(own), retain_graph=True
            )
            for tensor in own:
                if tensor.grad is None:
                    tensor.grad = torch.zeros_like(tensor)
        through = unflatten_like(weights.to(rows) @ rows, list(shared))
        torch.autograd.backward(list(shared), list(through))
        return self._step(weights, matrix, logs)

    def _coefficients(self, matrix: Tensor, losses: Tensor) -> tuple[Tensor, dict[str, Any]]:
        weights, logs = self.coefficients(matrix.double(), losses.detach().double())
        if weights.shape != (self.num_objectives,) or not bool(torch.isfinite(weights).all()):
            raise ValueError(
                f"{type(self).__name__} computed coefficients {weights.tolist()} for "
                f"{self.num_objectives} objectives"
            )
        return weights.to(losses.dtype), logs

    def _step(self, weights: Tensor, matrix: Tensor, logs: dict[str, Any]) -> WeightedStep:
        # ‖Σ_k a_k ∇L_k‖² = aᵀ M a
        norm = (weights.to(matrix) @ matrix @ weights.to(matrix)).clamp_min(0).sqrt()
        return WeightedStep(weights.detach(), {**logs, "shared_grad_norm": norm.detach()})
