"""Shared autograd helpers for learned loss weighting methods (torch only; no other part of
twcore is imported).

- :mod:`~twcore.autodiff.flat`: flat [P] vectors <-> per-parameter tensors, writing ``.grad``.
- :mod:`~twcore.autodiff.per_objective`: the [K, P] Jacobian of K objective losses.
- :mod:`~twcore.autodiff.gram`: Gram and cosine matrices of gradient rows.
- :mod:`~twcore.autodiff.layer_gram`: the Gram matrix of K objectives' gradients on a set of
  parameters, layer by layer from a recorded forward pass, without the [K, P] rows.
- :mod:`~twcore.autodiff.graph`: the parameters a loss's graph reaches.
- :mod:`~twcore.autodiff.implicit`: CG, Hessian-vector products, implicit hypergradients.
- :mod:`~twcore.autodiff.data_parallel`: a module split over processes with every derivative
  through it the single-process one (data-parallel runs).
"""

from twcore.autodiff.flat import (
    accumulate_flat_grad,
    assign_flat_grad,
    flatten_tensors,
    unflatten_like,
    write_flat_grad,
)
from twcore.autodiff.gram import (
    cosine_matrix,
    cosine_to,
    cosines_from_gram,
    gram_matrix,
    normalize_rows,
)
from twcore.autodiff.graph import own_leaves, reached_leaves, shared_leaves
from twcore.autodiff.implicit import (
    conjugate_gradient,
    hessian_vector_product,
    implicit_hypergradient,
)
from twcore.autodiff.layer_gram import GramRecorder, PathCosts
from twcore.autodiff.per_objective import per_objective_grads

__all__ = [
    "GramRecorder",
    "PathCosts",
    "accumulate_flat_grad",
    "assign_flat_grad",
    "conjugate_gradient",
    "cosine_matrix",
    "cosine_to",
    "cosines_from_gram",
    "flatten_tensors",
    "gram_matrix",
    "hessian_vector_product",
    "implicit_hypergradient",
    "normalize_rows",
    "own_leaves",
    "per_objective_grads",
    "reached_leaves",
    "shared_leaves",
    "unflatten_like",
    "write_flat_grad",
]
