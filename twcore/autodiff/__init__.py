"""Shared autograd helpers for learned loss weighting methods.

- :mod:`~twcore.autodiff.flat`: flat [P] vectors <-> per-parameter tensors, writing ``.grad``.
- :mod:`~twcore.autodiff.per_objective`: the [K, P] Jacobian of K objective losses.
- :mod:`~twcore.autodiff.gram`: Gram and cosine matrices of gradient rows.
- :mod:`~twcore.autodiff.lookahead`: differentiable one-step SGD lookahead, functional calls.
- :mod:`~twcore.autodiff.optimizer_lookahead`: the run optimiser's next step, differentiable.
- :mod:`~twcore.autodiff.optimizer_step_vjp`: that step's VJP in closed form (no graph).
- :mod:`~twcore.autodiff.implicit`: CG, Hessian-vector products, implicit hypergradients.
"""

from twcore.autodiff.flat import (
    assign_flat_grad,
    flatten_tensors,
    unflatten_like,
    write_flat_grad,
)
from twcore.autodiff.gram import cosine_matrix, cosine_to, gram_matrix, normalize_rows
from twcore.autodiff.implicit import (
    conjugate_gradient,
    hessian_vector_product,
    implicit_hypergradient,
)
from twcore.autodiff.lookahead import commit_lookahead, functional_forward, sgd_lookahead
from twcore.autodiff.optimizer_lookahead import optimizer_lookahead
from twcore.autodiff.optimizer_step_vjp import OptimizerStepVJP, step_with_vjp
from twcore.autodiff.per_objective import per_objective_grads

__all__ = [
    "OptimizerStepVJP",
    "assign_flat_grad",
    "commit_lookahead",
    "conjugate_gradient",
    "cosine_matrix",
    "cosine_to",
    "flatten_tensors",
    "functional_forward",
    "gram_matrix",
    "hessian_vector_product",
    "implicit_hypergradient",
    "normalize_rows",
    "optimizer_lookahead",
    "per_objective_grads",
    "sgd_lookahead",
    "step_with_vjp",
    "unflatten_like",
    "write_flat_grad",
]
