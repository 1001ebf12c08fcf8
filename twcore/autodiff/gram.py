"""Dot products and cosine similarities between gradient vectors.

All functions are zero-safe: a zero gradient has cosine 0 with everything, itself included, and
never produces NaN values or NaN gradients. Dividing by ``max(norm, eps)`` rather than by
``norm`` is what gives this: a zero row stays exactly zero after the division.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gram_matrix(grads: Tensor) -> Tensor:
    """Pairwise dot products of the rows of grads [K, P]; returns [K, K]."""
    _check_matrix("grads", grads)
    return grads @ grads.T


def normalize_rows(grads: Tensor, eps: float = 1e-12) -> Tensor:
    """Each row of grads [K, P] divided by its Euclidean norm; returns [K, P].

    Rows with norm at most `eps` are divided by `eps` instead, so zero rows stay zero.
    """
    _check_matrix("grads", grads)
    norms: Tensor = torch.linalg.vector_norm(grads, dim=1, keepdim=True)
    return grads / norms.clamp_min(eps)


def cosine_matrix(grads: Tensor, eps: float = 1e-12) -> Tensor:
    """Pairwise cosine similarities of the rows of grads [K, P]; returns [K, K].

    The diagonal is 1 for nonzero rows and 0 for zero rows.
    """
    unit = normalize_rows(grads, eps)
    return unit @ unit.T


def cosines_from_gram(gram: Tensor, eps: float = 1e-12) -> Tensor:
    """The cosine matrix [K, K] of the gradients whose Gram matrix is `gram` [K, K], equal to
    :func:`cosine_matrix` of the gradients themselves (a zero gradient: cosine 0)."""
    _check_matrix("gram", gram)
    norms = gram.diagonal().clamp_min(0).sqrt().clamp_min(eps)
    return gram / (norms.unsqueeze(0) * norms.unsqueeze(1))


def cosine_to(reference: Tensor, others: Tensor, eps: float = 1e-12) -> Tensor:
    """Cosine similarity of each row of others [M, P] to reference [P]; returns [M].

    Computed as dot products (one matrix-vector product) scaled by the inverse norms, so
    neither input is normalised into a full-size copy; a zero reference or row gives 0.
    """
    if reference.dim() != 1:
        raise ValueError(f"reference must have shape [P], got {tuple(reference.shape)}")
    _check_matrix("others", others)
    if others.shape[1] != reference.shape[0]:
        raise ValueError(
            f"others has {others.shape[1]} columns but reference has {reference.shape[0]} elements"
        )
    dots = others @ reference
    reference_norm: Tensor = torch.linalg.vector_norm(reference).clamp_min(eps)
    other_norms: Tensor = torch.linalg.vector_norm(others, dim=1).clamp_min(eps)
    return dots / (other_norms * reference_norm)


def _check_matrix(name: str, tensor: Tensor) -> None:
    if tensor.dim() != 2:
        raise ValueError(f"{name} must have shape [K, P], got {tuple(tensor.shape)}")
