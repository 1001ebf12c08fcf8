"""Which leaf tensors (parameters) an autograd graph reaches, found by walking it: no gradient is
computed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor
from torch.autograd.graph import Node

_STACK_NODE = type(torch.stack([torch.zeros((), requires_grad=True)] * 2).grad_fn)
"""The autograd node ``torch.stack`` records: its inputs are its branches, in order."""


def reached_leaves(output: Tensor) -> list[Tensor]:
    """The leaves that require grad and that `output`'s graph reaches (each once, in the order
    first met), e.g. the parameters a loss depends on; [] for a tensor without a graph."""
    if output.grad_fn is None:
        return [output] if output.requires_grad else []
    return list(_walk(output.grad_fn).values())


def splits_into_scalars(losses: Tensor) -> bool:
    """Whether `losses` [K] were stacked from K scalars (``torch.stack``), so that each can be
    walked or differentiated alone from the graph edge it entered the stack by."""
    node = losses.grad_fn
    return (
        losses.dim() == 1
        and node is not None
        and type(node) is _STACK_NODE
        and len(node.next_functions) == losses.shape[0]
    )


def shared_leaves(losses: Tensor) -> list[Tensor]:
    """The leaves that two or more of the K losses [K] depend on (the parameters the objectives
    share), in the order first met.

    For losses built with ``torch.stack`` each loss's graph is walked on its own (no gradient
    is computed). Otherwise each loss is differentiated once, and a leaf counts as reached by a
    loss where that gradient is not zero (an op such as ``cat`` joins the graphs, so structure
    alone cannot tell them apart; stack the losses to avoid the K backward passes).
    """
    if splits_into_scalars(losses):
        assert losses.grad_fn is not None
        reached = [_walk(branch) for branch, _ in losses.grad_fn.next_functions]
    else:
        leaves = reached_leaves(losses)
        reached = []
        for loss in losses:
            grads = torch.autograd.grad(loss, leaves, retain_graph=True, allow_unused=True)
            reached.append(
                {
                    id(p): p
                    for p, g in zip(leaves, grads, strict=True)
                    if g is not None and bool(g.ne(0).any())
                }
            )
    counts: dict[int, int] = {}
    order: dict[int, Tensor] = {}
    for found in reached:
        for key, leaf in found.items():
            counts[key] = counts.get(key, 0) + 1
            order.setdefault(key, leaf)
    return [leaf for key, leaf in order.items() if counts[key] > 1]


def own_leaves(
    losses: Tensor, shared: Sequence[Tensor], params: Iterable[Tensor] | None = None
) -> list[Tensor]:
    """The leaves the losses reach other than the `shared` ones (each objective's own
    parameters, a head), in `params`' order when given (a parameter the losses do not reach is
    left out), else in the order first met. When `shared` are not leaves (a representation the
    objectives share), the leaves reached through them are left out too."""
    excluded = {id(t) for t in shared}
    for tensor in shared:
        if not tensor.is_leaf:
            excluded.update(id(leaf) for leaf in reached_leaves(tensor))
    reached = reached_leaves(losses)
    if params is not None:
        reached_ids = {id(p) for p in reached}
        reached = [p for p in params if id(p) in reached_ids]
    return [p for p in reached if id(p) not in excluded]


def _walk(start: Node | None) -> dict[int, Tensor]:
    found: dict[int, Tensor] = {}
    seen: dict[int, Node] = {}  # the nodes stay referenced: an id is unique only then
    pending = [start]
    while pending:
        node = pending.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node
        variable = getattr(node, "variable", None)
        if isinstance(variable, Tensor):
            found.setdefault(id(variable), variable)
        pending.extend(next_node for next_node, _ in node.next_functions)
    return found
