"""Conversions between lists of parameter-shaped tensors and flat vectors.

Methods that combine per-objective gradients work on flat vectors ([P] or [K, P], with P the
total number of parameter elements); these helpers move between that view and the per-parameter
view that autograd and optimizers use.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def flatten_tensors(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate the flattened `tensors` (any shapes) into one vector of shape [P].

    P is the sum of the tensors' element counts. Differentiable; the result is a new tensor,
    never a view of the inputs.
    """
    if len(tensors) == 0:
        raise ValueError("flatten_tensors needs at least one tensor")
    return torch.cat([tensor.reshape(-1) for tensor in tensors])


def unflatten_like(flat: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split `flat` into tensors shaped like the tensors of `like` (inverse of flatten_tensors).

    flat [P] gives tensors of shapes ``like[i].shape``; flat [K, P] (a leading batch dim, e.g.
    one row per objective) gives tensors of shapes ``[K, *like[i].shape]``. The pieces are views
    of `flat` where the memory layout allows.
    """
    if len(like) == 0:
        raise ValueError("unflatten_like needs at least one tensor in `like`")
    if flat.dim() not in (1, 2):
        raise ValueError(f"flat must have shape [P] or [K, P], got {tuple(flat.shape)}")
    sizes = [tensor.numel() for tensor in like]
    total = sum(sizes)
    if flat.shape[-1] != total:
        raise ValueError(
            f"flat has {flat.shape[-1]} elements per row but the tensors in `like` "
            f"have {total} in total"
        )
    batch_shape = tuple(flat.shape[:-1])
    pieces = torch.split(flat, sizes, dim=-1)
    return [
        piece.reshape((*batch_shape, *tensor.shape))
        for piece, tensor in zip(pieces, like, strict=True)
    ]


def write_flat_grad(
    params: Sequence[Tensor], flat_grad: Tensor, *, accumulate: bool = False
) -> None:
    """Write the flat gradient flat_grad [P] into ``p.grad`` of each parameter of `params`.

    With ``accumulate=False`` existing gradients are replaced; with ``accumulate=True`` the
    values are added to them (a missing ``.grad`` counts as zero). The written gradients never
    share memory with `flat_grad` and carry no autograd graph, so a method can build the
    combined gradient however it likes and then call ``optimizer.step()``.
    """
    if flat_grad.dim() != 1:
        raise ValueError(f"flat_grad must have shape [P], got {tuple(flat_grad.shape)}")
    with torch.no_grad():
        for param, piece in zip(params, unflatten_like(flat_grad, params), strict=True):
            if param.grad is None:
                # empty_like keeps the parameter's strides, which is the layout autograd itself
                # gives to .grad; copy_ also decouples it from flat_grad's storage.
                param.grad = torch.empty_like(param).copy_(piece)
            elif accumulate:
                param.grad.add_(piece.to(param.grad.dtype))
            else:
                param.grad.copy_(piece)


def assign_flat_grad(params: Sequence[Tensor], flat_grad: Tensor) -> None:
    """Set ``p.grad`` of each parameter of `params` to a view of the flat gradient [P].

    The cheap sibling of :func:`write_flat_grad`: nothing is copied or allocated, so the
    gradients share memory with `flat_grad`. Use it only with a fresh vector that nothing else
    will modify (an optimizer that updates ``.grad`` in place would write into `flat_grad`).
    `flat_grad` must be contiguous and match the parameters' dtype; it is detached.
    """
    if flat_grad.dim() != 1:
        raise ValueError(f"flat_grad must have shape [P], got {tuple(flat_grad.shape)}")
    flat_grad = flat_grad.detach().contiguous()
    for param, piece in zip(params, unflatten_like(flat_grad, params), strict=True):
        if piece.dtype != param.dtype:
            raise ValueError(f"flat_grad has dtype {piece.dtype}, the parameters {param.dtype}")
        param.grad = piece


def accumulate_flat_grad(params: Sequence[Tensor], flat_grad: Tensor) -> None:
    """Add the flat gradient flat_grad [P] to ``p.grad`` of each parameter, as ``backward``
    does: a missing ``.grad`` becomes a view of `flat_grad` (no copy, as
    :func:`assign_flat_grad`; so give a fresh vector), an existing one is added to in place."""
    if flat_grad.dim() != 1:
        raise ValueError(f"flat_grad must have shape [P], got {tuple(flat_grad.shape)}")
    flat_grad = flat_grad.detach().contiguous()
    with torch.no_grad():
        for param, piece in zip(params, unflatten_like(flat_grad, params), strict=True):
            if param.grad is None:
                param.grad = piece.to(param.dtype)
            else:
                param.grad.add_(piece.to(param.grad.dtype))
