"""The vector-Jacobian product of a torch optimiser's next step with respect to the gradient.

Meta-learning methods whose base update *is* their lookahead (AdaLFL) need, for a cotangent z on
θ' = step(θ, g), the cotangent on the gradient: (∂θ'/∂g)ᵀ z. For SGD (momentum, Nesterov,
weight decay), Adam and AdamW (AMSGrad too) and RMSprop (momentum, centred) the step acts on
each element separately, so ∂θ'/∂g is a diagonal D that closed forms give in a few elementwise
passes. A global gradient-norm clip in front of the step adds a rank-one term. This replaces
differentiating through :func:`~twcore_method_adalfl.optimizer_lookahead.optimizer_lookahead`
(an autograd graph of about ten ops forward and ten backward per bucket); the tests check both
agree for every optimiser and setting.

:func:`step_with_vjp` takes the real step (gradient written to ``.grad``, the run's clip,
``optimizer.step()``, so the parameters move exactly as in plain training) and returns its VJP,
read from what the optimiser holds before and after the step: the running averages the step
computes anyway are not computed again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from twcore_method_adalfl.optimizer_lookahead import (
    OptimizerState,
    optimizer_kind,
    parameter_groups,
)

CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s


@dataclass
class OptimizerStepVJP:
    """z ↦ (∂θ'/∂g)ᵀ z for one step of an optimiser, with the gradient clip in front.

    Attributes:
        diagonal: name -> ∂θ'/∂g_c, elementwise (g_c the clipped gradient the optimiser sees).
        clip_scale: the clip's factor c/(‖g‖ + 1e-6) when it bit (< 1), else None.
        clip_slope: -c / ((‖g‖ + 1e-6)² ‖g‖): the rank-one term's coefficient when the clip bit.
        gradients: name -> the unclipped gradient g (only kept when the clip bit).
    """

    diagonal: dict[str, Tensor]
    clip_scale: Tensor | None = None
    clip_slope: Tensor | None = None
    gradients: dict[str, Tensor] | None = None

    def __call__(self, cotangents: Mapping[str, Tensor | None]) -> dict[str, Tensor]:
        """(∂θ'/∂g)ᵀ z for z = `cotangents` (name -> tensor; missing or None means zero).

        Without a clip that bit, names whose cotangent is zero are left out (their result is
        zero); with one, every parameter of the step has a result.
        """
        given = {n: z for n in self.diagonal if (z := cotangents.get(n)) is not None}
        names = list(given)
        pulled = dict(
            zip(
                names,
                torch._foreach_mul(list(given.values()), [self.diagonal[n] for n in names]),
                strict=True,
            )
        )
        if self.clip_scale is None or self.gradients is None or self.clip_slope is None:
            return pulled
        # clip(g) = s(g)·g with s = c/(‖g‖+ε): Jacobian s·I + g ∇sᵀ, and ∇s ∥ g (symmetric).
        # The rank-one term reaches every parameter, those without a cotangent too.
        inner = sum((pulled[n] * self.gradients[n]).sum() for n in names)
        return {
            name: gradient * (self.clip_slope * inner)
            + (pulled[name] * self.clip_scale if name in pulled else 0.0)
            for name, gradient in self.gradients.items()
        }

    def state_dict(self) -> dict[str, Any]:
        """Tensors only (a checkpoint loads with ``weights_only=True``)."""
        return {
            "diagonal": dict(self.diagonal),
            "clip_scale": self.clip_scale,
            "clip_slope": self.clip_slope,
            "gradients": dict(self.gradients) if self.gradients is not None else None,
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> OptimizerStepVJP:
        return cls(
            diagonal=dict(state["diagonal"]),
            clip_scale=state["clip_scale"],
            clip_slope=state["clip_slope"],
            gradients=dict(state["gradients"]) if state["gradients"] is not None else None,
        )


def step_with_vjp(
    optimizer: torch.optim.Optimizer,
    params: Mapping[str, Tensor],
    grads: Mapping[str, Tensor],
    *,
    grad_clip: float | None = None,
) -> OptimizerStepVJP:
    """Step `optimizer` with gradients `grads` and return the step's VJP in the gradient.

    Args:
        optimizer: an optimiser over the parameters in `params` (SGD, Adam, AdamW, RMSprop).
        params: name -> the ``nn.Parameter`` objects themselves, at θ (before the step).
        grads: name -> the gradient before clipping; these tensors become the ``.grad`` the
            step reads (the clip scales them in place, as ``clip_grad_norm_`` does). Parameters
            missing here get no gradient (the step skips them).
        grad_clip: the global-norm clip applied before the step (``clip_grad_norm_``), or None.

    Returns:
        The map z ↦ (∂θ'/∂g)ᵀ z of the step just taken.
    """
    groups = parameter_groups(optimizer, params, grads, "step Jacobian")
    rule = _DIAGONALS[optimizer_kind(optimizer, "step Jacobian")]
    for name, parameter in params.items():
        parameter.grad = grads.get(name)
    names = list(grads)
    clip = _clip(params, grads, names, grad_clip)
    by_group: dict[int, list[str]] = {}
    for name in names:
        by_group.setdefault(id(groups[id(params[name])]), []).append(name)

    def members_of(key: int) -> tuple[list[Tensor], dict[str, Any]]:
        members = by_group[key]
        return [params[n] for n in members], groups[id(params[members[0]])]

    prepared = {}
    for key in by_group:
        like, group = members_of(key)
        prepared[key] = rule.before(like, [optimizer.state.get(p, {}) for p in like], group)
    optimizer.step()
    diagonal: dict[str, Tensor] = {}
    for key, members in by_group.items():
        like, group = members_of(key)
        states = [optimizer.state[p] for p in like]
        diagonal.update(zip(members, rule.after(prepared[key], states, group), strict=True))
    scale, slope, unclipped = clip
    return OptimizerStepVJP(
        diagonal=diagonal, clip_scale=scale, clip_slope=slope, gradients=unclipped
    )


def _clip(
    params: Mapping[str, Tensor],
    grads: Mapping[str, Tensor],
    names: list[str],
    grad_clip: float | None,
) -> tuple[Tensor | None, Tensor | None, dict[str, Tensor] | None]:
    """Clip the ``.grad`` of `params` as ``clip_grad_norm_`` does; when the clip bites, return
    (its scale s, the slope of s in ‖g‖, and g recovered from the clipped gradients), else
    Nones (clip(g) = s(g)·g with s = c/(‖g‖ + ε))."""
    if grad_clip is None:
        return None, None, None
    norm = torch.nn.utils.clip_grad_norm_(list(params.values()), grad_clip)
    factor = grad_clip / (norm + CLIP_EPS)
    if not bool(factor < 1.0):
        return None, None, None
    slope = -grad_clip / ((norm + CLIP_EPS) ** 2 * norm)
    # g back from the clipped .grad (to rounding): no copy of g on steps the clip leaves alone.
    unclipped = torch._foreach_div([grads[n].detach() for n in names], factor)
    return factor, slope, dict(zip(names, unclipped, strict=True))


class _Rule:
    """How one optimiser's ∂θ'/∂g is read: `before` the step (from the clipped ``.grad``, θ and
    the old state), then `after` it (from the new state)."""

    def before(
        self, params: list[Tensor], states: list[OptimizerState], group: dict[str, Any]
    ) -> Any:
        raise NotImplementedError

    def after(
        self, prepared: Any, states: list[OptimizerState], group: dict[str, Any]
    ) -> list[Tensor]:
        raise NotImplementedError


def _effective_gradients(params: list[Tensor], decay: float) -> list[Tensor]:
    """The gradient the step's running averages see: g, or g + decay·θ (L2 weight decay)."""
    gradients = [p.grad.detach() for p in params]  # type: ignore[union-attr]
    if not decay:
        return gradients
    return list(torch._foreach_add(gradients, [p.detach() for p in params], alpha=decay))


class _SGD(_Rule):
    # θ' = θ − lr·d, d linear in g: buffer' = μ·buffer + (1 − dampening)·g (the first step's
    # buffer is g itself), d = buffer' or g + μ·buffer' (Nesterov).
    def before(
        self, params: list[Tensor], states: list[OptimizerState], group: dict[str, Any]
    ) -> Any:
        momentum, lr = group["momentum"], group["lr"]
        slopes = []
        for state in states:
            slope = 1.0
            if momentum:
                fresh = state.get("momentum_buffer") is None
                buffer_slope = 1.0 if fresh else 1.0 - group["dampening"]
                slope = 1.0 + momentum * buffer_slope if group["nesterov"] else buffer_slope
            slopes.append(-lr * slope)
        return [torch.full_like(p, slope) for p, slope in zip(params, slopes, strict=True)]

    def after(
        self, prepared: Any, states: list[OptimizerState], group: dict[str, Any]
    ) -> list[Tensor]:
        diagonal: list[Tensor] = prepared  # SGD's ∂θ'/∂g is known before the step
        return diagonal


class _Adam(_Rule):
    # θ' = θ − (lr/c₁)·m'/(√v̂/√c₂ + ε), m' = β₁m + (1−β₁)g, v' = β₂v + (1−β₂)g² (v̂ = v', or
    # max(v_max, v') with AMSGrad). Elementwise, with den = √v̂/√c₂ + ε:
    #   ∂θ'/∂g = −(lr/c₁)/den · [(1−β₁) − (1−β₂)/√c₂ · m'·g/(den·√v̂)·[v' is the max]]
    def __init__(self, decoupled: bool) -> None:
        self.decoupled = decoupled

    def before(
        self, params: list[Tensor], states: list[OptimizerState], group: dict[str, Any]
    ) -> Any:
        decoupled = group.get("decoupled_weight_decay", self.decoupled)
        gradients = _effective_gradients(params, 0.0 if decoupled else group["weight_decay"])
        counts = [float(s["step"]) + 1 if "step" in s else 1.0 for s in states]
        return gradients, counts

    def after(
        self, prepared: Any, states: list[OptimizerState], group: dict[str, Any]
    ) -> list[Tensor]:
        gradients, counts = prepared
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        firsts = [s["exp_avg"] for s in states]
        seconds = [s["exp_avg_sq"] for s in states]
        active = None
        if group.get("amsgrad", False):
            maxima = [s["max_exp_avg_sq"] for s in states]
            active = [torch.ge(v, m) for v, m in zip(seconds, maxima, strict=True)]
            seconds = maxima
        root2 = [(1 - beta2**c) ** 0.5 for c in counts]
        # Ten elementwise passes: ∂θ'/∂g = A/den + B·m'g/(√v̂·den²), A = −(lr/c₁)(1−β₁),
        # B = (lr/c₁)(1−β₂)/√c₂.
        roots = torch._foreach_sqrt(seconds)
        denominators = torch._foreach_div(roots, root2)
        torch._foreach_add_(denominators, eps)
        curvature = torch._foreach_mul(firsts, gradients)
        if active is not None:
            torch._foreach_mul_(curvature, active)
        torch._foreach_mul_(roots, denominators)
        torch._foreach_clamp_min_(roots, 1e-30)  # √v̂ = 0 only where g = 0: the term is 0
        torch._foreach_div_(curvature, roots)
        diagonal = torch._foreach_reciprocal(denominators)
        torch._foreach_mul_(diagonal, [-(lr / (1 - beta1**c)) * (1 - beta1) for c in counts])
        scales = [
            (lr / (1 - beta1**c)) * (1 - beta2) / r for c, r in zip(counts, root2, strict=True)
        ]
        torch._foreach_addcdiv_(diagonal, curvature, denominators, scales)
        return list(diagonal)


class _RMSprop(_Rule):
    # θ' = θ − lr·(μ·buffer + g/avg) (μ = 0: θ − lr·g/avg), avg = √(sq' − [centred] a'²) + ε,
    # sq' = αsq + (1−α)g², a' = αa + (1−α)g:
    #   ∂θ'/∂g = −lr·[1 − (1−α)·g·(g − [centred] a')/(√(·)·avg)]/avg
    def before(
        self, params: list[Tensor], states: list[OptimizerState], group: dict[str, Any]
    ) -> Any:
        return _effective_gradients(params, group["weight_decay"])

    def after(
        self, prepared: Any, states: list[OptimizerState], group: dict[str, Any]
    ) -> list[Tensor]:
        gradients = prepared
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        squares = [s["square_avg"] for s in states]
        drift = gradients
        if group["centered"]:
            means = [s["grad_avg"] for s in states]
            squares = list(torch._foreach_addcmul(squares, means, means, value=-1))
            drift = torch._foreach_sub(gradients, means)
        roots = torch._foreach_sqrt(squares)
        averages = torch._foreach_add(roots, eps)
        slopes = torch._foreach_mul(gradients, drift)
        torch._foreach_mul_(slopes, -(1 - alpha))
        torch._foreach_clamp_min_(roots, 1e-30)
        torch._foreach_div_(slopes, roots)
        torch._foreach_div_(slopes, averages)
        torch._foreach_add_(slopes, 1.0)
        torch._foreach_div_(slopes, averages)
        torch._foreach_mul_(slopes, -lr)
        return list(slopes)


_DIAGONALS: dict[str, _Rule] = {
    "SGD": _SGD(),
    "Adam": _Adam(decoupled=False),
    "AdamW": _Adam(decoupled=True),
    "RMSprop": _RMSprop(),
}
