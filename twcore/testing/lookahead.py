"""Differentiable one-step lookahead of a module's parameters, and evaluation at them.

Meta-learning methods (a learned loss network, learned loss weights) train their
meta-parameters by taking a virtual optimiser step θ' = θ − lr·∇θ L_inner and differentiating a
meta-objective evaluated at θ' back through that step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


def sgd_lookahead(
    params: Mapping[str, Tensor],
    loss: Tensor,
    lr: float | Tensor,
    *,
    create_graph: bool = True,
) -> dict[str, Tensor]:
    """One functional SGD step θ' = θ − lr·∇θ loss; the module's own parameters are untouched.

    Args:
        params: parameter name -> tensor (e.g. ``dict(model.named_parameters())``); the tensors
            that require grad are stepped.
        loss: scalar inner loss computed from `params` (and from any meta-parameters).
        lr: step size, a float or a tensor (scalar, or broadcastable to every parameter); a
            tensor that requires grad receives gradients through θ'.
        create_graph: with True, θ' is differentiable with respect to everything `loss`
            depended on (second-order meta-gradients). With False the gradient is taken as a
            constant, so θ' depends only on θ and `lr` (the first-order approximation).

    Returns:
        name -> θ' with the shapes of `params`. Parameters the loss does not reach, and those
        that do not require grad, are returned unchanged (the same tensor objects).
    """
    names = [name for name, tensor in params.items() if tensor.requires_grad]
    if loss.dim() != 0:
        raise ValueError(f"loss must be a scalar, got shape {tuple(loss.shape)}")
    stepped = dict(params)
    if not names or not loss.requires_grad:
        return stepped
    grads = torch.autograd.grad(
        loss,
        [params[name] for name in names],
        create_graph=create_graph,
        allow_unused=True,
    )
    for name, grad in zip(names, grads, strict=True):
        if grad is not None:
            stepped[name] = params[name] - lr * grad
    return stepped


def functional_forward(
    module: torch.nn.Module, params: Mapping[str, Tensor], *args: Any, **kwargs: Any
) -> Any:
    """Call ``module(*args, **kwargs)`` with its parameters replaced by `params`.

    A thin wrapper over :func:`torch.func.functional_call`: `params` maps names as in
    ``module.named_parameters()`` (and optionally buffers) to tensors, e.g. the lookahead
    parameters from :func:`sgd_lookahead`; parameters and buffers not in `params` are taken
    from the module. Gradients flow to the tensors in `params`. The module's parameters are not
    modified, but its own buffers are updated as in a normal forward (e.g. BatchNorm running
    statistics in training mode); pass them in `params` to keep the module untouched.
    """
    return torch.func.functional_call(module, dict(params), args, kwargs)


def commit_lookahead(module: torch.nn.Module, lookahead: Mapping[str, Tensor]) -> None:
    """Make a lookahead the module's parameters: copy θ' into them in place (no graph).

    Methods whose base update *is* the lookahead (a learned loss, a lookahead weighting) call
    this after their meta-update instead of a second forward/backward pass. Entries that are not
    parameters of `module` raise KeyError; parameters without an entry are left as they are.
    """
    parameters = dict(module.named_parameters())
    with torch.no_grad():
        for name, value in lookahead.items():
            parameters[name].copy_(value)
