"""Aligned-MTL (Senushkin et al., CVPR 2023, "Independent Component Alignment for Multi-Task
Learning"): make the objectives' gradients orthogonal and of equal norm before combining them.

With G the [K, P] gradient rows on the shared tensors and M = G Gᵀ = V Λ Vᵀ (paper Alg. 1):

    B = σ_min V Λ^{-1/2} Vᵀ,   Ĝ = B G,   d = Ĝᵀ w

over the eigenvalues above a tolerance (rank-deficient M keeps its range), σ_min = √λ_min of
those. Ĝ Ĝᵀ = B M B = σ_min² I on that range: the aligned gradients are orthogonal with norm
σ_min, so the combined system has condition number 1 (no objective dominates, none is
cancelled). w are the objectives' preferences, uniform: 1/K here, the mean scale of equal
weighting (the authors' code uses w = 1, a K times larger step); the step is Σ_k a_k g_k with a
= B w, and each objective's own parameters keep their plain gradient. Eigenvalues below K ·
λ_max · ε of float32 count as zero (the gradients are float32 however M is held). The UB variant
(``interaction=features`` in the engine) aligns ∇_z L_k on the shared representation, as MGDA-UB
does.

    rule = AlignedMTL(num_objectives=3)
    optimizer.zero_grad()
    step = rule.backward(torch.stack(losses), shared=list(trunk.parameters()))
    optimizer.step()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from twcore.contract.gram_weighting import GramWeighting


def alignment_matrix(gram: Tensor) -> tuple[Tensor, int]:
    """B [K, K] (module docstring) and the rank kept, from the Gram matrix [K, K]."""
    size = gram.shape[0]
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)
    largest = float(eigenvalues.max()) if size else 0.0
    if largest <= 0:
        return torch.zeros_like(gram), 0
    tolerance = largest * size * torch.finfo(torch.float32).eps
    kept = eigenvalues > tolerance
    values, vectors = eigenvalues[kept], eigenvectors[:, kept]
    smallest = values.min().sqrt()
    return smallest * (vectors * values.rsqrt()) @ vectors.T, int(kept.sum())


class AlignedMTL(GramWeighting):
    """Aligned gradients: orthogonal, equal-norm, then averaged (see the module docstring).

    Args:
        num_objectives: K.
    """

    def coefficients(self, gram: Tensor, losses: Tensor) -> tuple[Tensor, dict[str, Any]]:
        alignment, rank = alignment_matrix(gram)
        preferences = torch.full_like(losses, 1.0 / self.num_objectives)
        return alignment @ preferences, {"rank": rank}
