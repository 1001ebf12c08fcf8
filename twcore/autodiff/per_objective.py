"""The Jacobian of K objective losses with respect to shared tensors, as a [K, P] matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.autograd.graph import GradientEdge

from twcore.autodiff.graph import splits_into_scalars

STRATEGIES = ("auto", "batched", "loop", "split")


def per_objective_grads(
    losses: Tensor,
    inputs: Sequence[Tensor],
    *,
    retain_graph: bool = True,
    create_graph: bool = False,
    strategy: str = "auto",
) -> Tensor:
    """Gradient of each objective loss with respect to `inputs`, one row per objective.

    Args:
        losses: [K] scalar objective losses that share one autograd graph (e.g.
            ``torch.stack([loss_a, loss_b, loss_c])``).
        inputs: tensors to differentiate with respect to: shared parameters, or a shared
            representation such as trunk features [B, H]. P is their total element count.
        retain_graph: keep the graph of `losses` for later backward passes.
        create_graph: build a graph of the result, for higher-order derivatives.
        strategy: ``"batched"`` runs one vectorised backward pass over the K rows of an
            identity matrix (``is_grads_batched``); ``"loop"`` runs K backward passes;
            ``"split"`` differentiates each of the K scalars the losses were stacked from on
            its own (each pass runs only what that loss computed from `inputs`: its own head,
            where a vectorised pass runs every head for every row); ``"auto"`` splits when
            the losses were stacked from K scalars and every input is an intermediate tensor
            (a representation: the passes stop there), and otherwise tries ``"batched"`` and
            falls back to ``"loop"`` if batching raises (an op without a vmap rule, or
            data-dependent code in a backward). ``"split"`` does as ``"auto"`` where the
            losses are not stacked from scalars or a pass cannot start from a graph edge.

    Returns:
        G [K, P]: row k is the gradient of ``losses[k]`` flattened in the order of `inputs`
        (see :func:`twcore.autodiff.flat.unflatten_like`). Inputs a loss does not depend on
        contribute zeros, never ``None``.

    In ``"auto"`` and ``"split"`` modes the first attempt always retains the graph, because a
    failure can happen halfway through the backward pass and the fallback needs the graph
    intact; with ``retain_graph=False`` the graph is then freed only when `losses` is
    garbage-collected.
    """
    inputs = list(inputs)
    _validate(losses, inputs, strategy)
    if not losses.requires_grad:
        # Constant losses have a well-defined gradient, zero, which autograd would reject.
        return _zeros(losses.shape[0], inputs)
    if strategy == "batched":
        return _batched(losses, inputs, retain_graph=retain_graph, create_graph=create_graph)
    if strategy == "loop":
        return _loop(losses, inputs, retain_graph=retain_graph, create_graph=create_graph)
    split = strategy == "split" or not any(tensor.is_leaf for tensor in inputs)
    if split and splits_into_scalars(losses):
        try:
            # The graph is kept for the fallback below if a pass fails halfway.
            grads = each_scalar_grads(losses, inputs, retain_graph=True, create_graph=create_graph)
            return _as_matrix(losses.shape[0], grads, inputs)
        except (TypeError, AttributeError, RuntimeError):
            pass  # (a torch that cannot start a pass from a graph edge) as "auto" below
    try:
        return _batched(losses, inputs, retain_graph=True, create_graph=create_graph)
    except RuntimeError:
        return _loop(losses, inputs, retain_graph=retain_graph, create_graph=create_graph)


def _validate(losses: Tensor, inputs: list[Tensor], strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy '{strategy}'; valid strategies: {list(STRATEGIES)}")
    if not isinstance(losses, Tensor):
        raise TypeError(f"losses must be a tensor of shape [K], got {type(losses).__name__}")
    if losses.dim() != 1:
        raise ValueError(
            f"losses must be a 1-D tensor [K] of scalar objective losses, "
            f"got shape {tuple(losses.shape)}; use torch.stack([...]) on the scalar losses"
        )
    if losses.shape[0] == 0:
        raise ValueError("losses is empty; per_objective_grads needs at least one objective")
    if len(inputs) == 0:
        raise ValueError("inputs is empty; pass the tensors to differentiate with respect to")


def _batched(
    losses: Tensor, inputs: list[Tensor], *, retain_graph: bool, create_graph: bool
) -> Tensor:
    num_objectives = losses.shape[0]
    # Row k of the identity selects objective k, so one vmapped backward pass gives every row.
    selectors = torch.eye(num_objectives, dtype=losses.dtype, device=losses.device)
    grads = torch.autograd.grad(
        losses,
        inputs,
        grad_outputs=selectors,
        is_grads_batched=True,
        retain_graph=retain_graph,
        create_graph=create_graph,
        allow_unused=True,
    )
    return _as_matrix(num_objectives, grads, inputs)


def _loop(
    losses: Tensor, inputs: list[Tensor], *, retain_graph: bool, create_graph: bool
) -> Tensor:
    num_objectives = losses.shape[0]
    selectors = torch.eye(num_objectives, dtype=losses.dtype, device=losses.device)
    rows = []
    for k in range(num_objectives):
        # Every pass but the last must keep the graph for the next objective.
        last = k == num_objectives - 1
        grads = torch.autograd.grad(
            losses,
            inputs,
            grad_outputs=selectors[k],
            retain_graph=retain_graph if last else True,
            create_graph=create_graph,
            allow_unused=True,
        )
        rows.append(_as_matrix(1, grads, inputs))
    return torch.cat(rows, dim=0)


def _as_matrix(num_rows: int, grads: Sequence[Tensor | None], inputs: list[Tensor]) -> Tensor:
    """[num_rows, P] from per-input gradients of shape [num_rows, *shape] (or [*shape] if 1)."""
    columns = []
    for grad, tensor in zip(grads, inputs, strict=True):
        if grad is None:
            columns.append(
                torch.zeros(num_rows, tensor.numel(), dtype=tensor.dtype, device=tensor.device)
            )
        else:
            columns.append(grad.reshape(num_rows, -1))
    return torch.cat(columns, dim=1)


def _zeros(num_rows: int, inputs: list[Tensor]) -> Tensor:
    total = sum(tensor.numel() for tensor in inputs)
    return torch.zeros(num_rows, total, dtype=inputs[0].dtype, device=inputs[0].device)


def each_scalar_grads(
    losses: Tensor,
    inputs: Sequence[Tensor],
    *,
    retain_graph: bool = True,
    create_graph: bool = False,
) -> tuple[Tensor, ...]:
    """[K, *input] for each input: the gradient of each scalar that `losses` were stacked from
    (:func:`splits_into_scalars` must hold), each in its own backward pass from its graph edge
    (zeros where one does not reach an input). Each pass runs only that scalar's part of the
    graph above `inputs`. Raises what autograd raises (e.g. TypeError where this torch cannot
    start a pass from a graph edge)."""
    node: Any = losses.grad_fn
    inputs = list(inputs)
    one = torch.ones((), dtype=losses.dtype, device=losses.device)
    edges = list(node.next_functions)
    rows: list[list[Tensor]] = [[] for _ in inputs]
    for position, (source, index) in enumerate(edges):
        grads: Sequence[Tensor | None] = [None] * len(inputs)
        if source is not None:
            grads = torch.autograd.grad(
                [GradientEdge(source, index)],
                inputs,
                [one],
                retain_graph=retain_graph or position < len(edges) - 1,
                create_graph=create_graph,
                allow_unused=True,
            )
        for column, (grad, tensor) in enumerate(zip(grads, inputs, strict=True)):
            rows[column].append(torch.zeros_like(tensor) if grad is None else grad)
    return tuple(torch.stack(column) for column in rows)
