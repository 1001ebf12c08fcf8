"""Which leaf tensors (parameters) an autograd graph reaches, found by walking it: no gradient is
computed."""

from __future__ import annotations

from torch import Tensor


def reached_leaves(output: Tensor) -> list[Tensor]:
    """The leaves that require grad and that `output`'s graph reaches (each once, in the order
    first met), e.g. the parameters a loss depends on; [] for a tensor without a graph."""
    if output.grad_fn is None:
        return [output] if output.requires_grad else []
    found: dict[int, Tensor] = {}
    seen: set[int] = set()
    pending = [output.grad_fn]
    while pending:
        node = pending.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        variable = getattr(node, "variable", None)  # an AccumulateGrad node holds its leaf
        if isinstance(variable, Tensor):
            found.setdefault(id(variable), variable)
        pending.extend(next_node for next_node, _ in node.next_functions)
    return list(found.values())
