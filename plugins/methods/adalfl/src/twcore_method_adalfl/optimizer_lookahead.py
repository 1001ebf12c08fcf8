"""The step a torch optimiser is about to take, as a differentiable function of the gradient.

Meta-learning methods whose base update *is* their lookahead (a learned loss network, AdaLFL)
need θ' = step(θ, g(φ)) as a graph in φ, with exactly the update the run's optimiser will then
apply: SGD (momentum, Nesterov, weight decay), Adam, AdamW (AMSGrad too) and RMSprop (momentum,
centred) read their hyperparameters from the parameter's group and their running averages from
the optimiser's state, which is left untouched. After the meta-update the method writes the
detached gradient into ``.grad`` and calls ``optimizer.step()``: the parameters then equal the
detached lookahead (the tests check this for every optimiser and setting).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from twcore.autodiff.flat import flatten_tensors, unflatten_like

SUPPORTED: tuple[tuple[type[torch.optim.Optimizer], str], ...] = (
    (torch.optim.AdamW, "AdamW"),  # before Adam: AdamW may subclass it
    (torch.optim.Adam, "Adam"),
    (torch.optim.SGD, "SGD"),
    (torch.optim.RMSprop, "RMSprop"),
)
"""The optimisers whose step is written out here, and the rule each uses; a subclass of one
(with the same update) uses its parent's rule."""

OptimizerState = dict[str, Any]
"""One parameter's (or one flat bucket's) optimiser state: ``step``, running averages."""


def optimizer_kind(optimizer: torch.optim.Optimizer, what: str) -> str:
    """The rule `optimizer` steps by (a name of :data:`SUPPORTED`), by class, subclasses
    included; TypeError naming `what` (the caller's computation) for any other optimiser."""
    for cls, kind in SUPPORTED:
        if isinstance(optimizer, cls):
            return kind
    names = ", ".join(kind for _, kind in SUPPORTED)
    raise TypeError(
        f"no {what} for optimiser {type(optimizer).__name__}; supported: {names} (and their "
        "subclasses)"
    )


def optimizer_lookahead(
    optimizer: torch.optim.Optimizer,
    params: Mapping[str, Tensor],
    grads: Mapping[str, Tensor],
    *,
    grad_clip: float | None = None,
) -> dict[str, Tensor]:
    """θ' after one step of `optimizer` with gradients `grads`, differentiable in `grads`.

    Args:
        optimizer: an optimiser over the parameters in `params` (SGD, Adam, AdamW, RMSprop).
        params: name -> the ``nn.Parameter`` objects themselves (their optimiser state is looked
            up by identity).
        grads: name -> gradient tensor of the same shape (e.g. from ``torch.autograd.grad(...,
            create_graph=True)``); names missing here are parameters without a gradient, which
            optimisers skip.
        grad_clip: the global-norm clip applied before the step (as ``clip_grad_norm_``), or None.

    Returns:
        name -> θ' for every name in `grads`; no state of `optimizer` changes.
    """
    groups = parameter_groups(optimizer, params, grads, "differentiable lookahead")
    kind = optimizer_kind(optimizer, "differentiable lookahead")
    # Parameters that share a group and the same kind of state step together as one flat
    # vector: a dozen elementwise ops per bucket instead of per parameter.
    buckets: dict[tuple[int, float | None, frozenset[str]], list[str]] = defaultdict(list)
    for name in grads:
        parameter_state = optimizer.state.get(params[name], {})
        count = float(parameter_state["step"]) if "step" in parameter_state else None
        tensors = frozenset(
            k for k, v in parameter_state.items() if k != "step" and torch.is_tensor(v)
        )
        buckets[(id(groups[id(params[name])]), count, tensors)].append(name)
    flat_grads = {key: flatten_tensors([grads[n] for n in names]) for key, names in buckets.items()}
    if grad_clip is not None:
        total = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g) for g in flat_grads.values()])
        )
        scale = (grad_clip / (total + 1e-6)).clamp(max=1.0)
        flat_grads = {key: g * scale for key, g in flat_grads.items()}
    step = _STEPS[kind]
    ahead: dict[str, Tensor] = {}
    for key, names in buckets.items():
        _, count, tensors = key
        like = [params[n] for n in names]
        states = [optimizer.state[p] for p in like] if tensors or count is not None else []
        state: dict[str, Any] = {k: flatten_tensors([s[k] for s in states]) for k in tensors}
        if count is not None:
            state["step"] = count
        theta = flatten_tensors([p.detach() for p in like])
        stepped = step(theta, flat_grads[key], groups[id(like[0])], state)
        ahead.update(zip(names, unflatten_like(stepped, like), strict=True))
    return ahead


def parameter_groups(
    optimizer: torch.optim.Optimizer, params: Mapping[str, Tensor], names: Iterable[str], what: str
) -> dict[int, dict[str, Any]]:
    """id(parameter) -> its group, after checking that `optimizer` is one of :data:`SUPPORTED`,
    optimises every parameter in `names` and descends (`what` names the caller's computation in
    the errors)."""
    optimizer_kind(optimizer, what)
    groups = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    missing = [name for name in names if id(params[name]) not in groups]
    if missing:
        raise ValueError(f"parameters {missing} are not optimised by this optimiser")
    if any(group.get("maximize", False) for group in optimizer.param_groups):
        raise ValueError(f"an optimiser group maximises; the {what} assumes descent")
    return groups


def _sgd(theta: Tensor, gradient: Tensor, group: dict[str, Any], state: OptimizerState) -> Tensor:
    direction = gradient + group["weight_decay"] * theta if group["weight_decay"] else gradient
    momentum = group["momentum"]
    if momentum:
        buffer = state.get("momentum_buffer")
        if buffer is None:  # torch starts the buffer at the first direction
            buffer = direction
        else:
            buffer = momentum * buffer + (1 - group["dampening"]) * direction
        direction = direction + momentum * buffer if group["nesterov"] else buffer
    lr: float | Tensor = group["lr"]
    return theta - lr * direction


def _adam(decoupled: bool) -> Callable[[Tensor, Tensor, dict[str, Any], OptimizerState], Tensor]:
    def step(
        theta: Tensor, gradient: Tensor, group: dict[str, Any], state: OptimizerState
    ) -> Tensor:
        lr, (beta1, beta2), eps, decay = (
            group["lr"],
            group["betas"],
            group["eps"],
            group["weight_decay"],
        )
        # Adam(decoupled_weight_decay=True) decays as AdamW does.
        if decoupled or group.get("decoupled_weight_decay", False):
            theta = theta * (1 - lr * decay)
        elif decay:
            gradient = gradient + decay * theta
        count = float(state["step"]) + 1 if "step" in state else 1.0
        # Fused ops (lerp, addcmul, addcdiv): these are [P]-long vectors, and every op is a pass
        # over memory, forward and backward.
        if "exp_avg" in state:
            first = torch.lerp(state["exp_avg"], gradient, 1 - beta1)
            second = torch.addcmul(state["exp_avg_sq"] * beta2, gradient, gradient, value=1 - beta2)
        else:
            first = gradient * (1 - beta1)
            second = gradient * gradient * (1 - beta2)
        if group.get("amsgrad", False) and "max_exp_avg_sq" in state:
            second = torch.maximum(state["max_exp_avg_sq"], second)
        correction1 = 1 - beta1**count
        correction2 = 1 - beta2**count
        denominator = (_safe_sqrt(second) / correction2**0.5).add_(eps)
        return torch.addcdiv(theta, first, denominator, value=-lr / correction1)

    return step


def _rmsprop(
    theta: Tensor, gradient: Tensor, group: dict[str, Any], state: OptimizerState
) -> Tensor:
    if group["weight_decay"]:
        gradient = gradient + group["weight_decay"] * theta
    alpha, eps = group["alpha"], group["eps"]
    square = alpha * state.get("square_avg", torch.zeros_like(theta)) + (1 - alpha) * gradient**2
    if group["centered"]:
        mean = alpha * state.get("grad_avg", torch.zeros_like(theta)) + (1 - alpha) * gradient
        average: Tensor = _safe_sqrt(square - mean * mean) + eps
    else:
        average = _safe_sqrt(square) + eps
    lr: float | Tensor = group["lr"]
    momentum: float = group["momentum"]
    if momentum > 0:
        buffer: Tensor = state.get("momentum_buffer", torch.zeros_like(theta))
        return theta - lr * (momentum * buffer + gradient / average)
    return theta - lr * gradient / average


def _safe_sqrt(value: Tensor) -> Tensor:
    """√value with gradient 0 (not inf·0 = NaN) where value is 0, e.g. an unused weight."""
    # torch.autograd.Function.apply is unannotated.
    root: Tensor = _SafeSqrt.apply(value)  # type: ignore[no-untyped-call]
    return root


class _SafeSqrt(torch.autograd.Function):
    """One op forward, one backward (``torch.where`` around ``sqrt`` costs four)."""

    @staticmethod
    def forward(ctx: Any, value: Tensor) -> Tensor:
        root = torch.sqrt(value)
        ctx.save_for_backward(root)
        return root

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (root,) = ctx.saved_tensors
        return torch.where(root > 0, grad / (2 * root), 0.0)


_STEPS = {
    "SGD": _sgd,
    "Adam": _adam(decoupled=False),
    "AdamW": _adam(decoupled=True),
    "RMSprop": _rmsprop,
}
