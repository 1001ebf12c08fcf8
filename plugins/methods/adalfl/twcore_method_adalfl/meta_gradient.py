"""The meta-gradient of AdaLFL, exactly, without a second-order pass through the model.

With f = f_θ(x) the model's outputs, ℓφ the learned loss and L the meta-objective at the lookahead
θ' = step(θ, g):

    g = J_θᵀ ∇_f ℓφ(f)                                    (J_θ = ∂f/∂θ)
    ∂L/∂φ = (∂∇_f ℓφ(f)/∂φ)ᵀ · J_θ · (∂θ'/∂g)ᵀ ∇θ' L

So: one ordinary backward pass gives g; the optimiser's step is differentiated with respect to g
alone (an elementwise map, plus the global clip); the meta-objective's backward pass gives
v = (∂θ'/∂g)ᵀ ∇θ' L; one forward-mode pass gives u = J_θ v; and the only second-order term,
∂/∂φ ⟨∇_f ℓφ(f), u⟩, lives in the small loss network. Differentiating through
``torch.autograd.grad(..., create_graph=True)`` of the whole model (the textbook way) gives the
same number at about twice the cost; the tests check both against finite differences.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp

from twcore.autodiff import optimizer_lookahead


@dataclass
class MetaStep:
    """What one meta-gradient computation yields.

    Attributes:
        meta_loss: the meta-objective L(θ'), detached.
        meta_gradient: ∂L/∂φ, one tensor per loss-network parameter (None where unused).
        gradients: g = ∇θ ℓφ by parameter name (detached): the base step's gradient.
        base_losses: [K] base losses of the step's batch at θ, detached.
        learned_loss: the learned loss at θ, detached.
    """

    meta_loss: Tensor
    meta_gradient: list[Tensor | None]
    gradients: dict[str, Tensor]
    base_losses: Tensor
    learned_loss: Tensor


LearnedLossFn = Callable[[Mapping[str, Tensor]], tuple[Tensor, Tensor]]
MetaLossFn = Callable[[Mapping[str, Tensor]], Tensor]


def lookahead_meta_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: Tensor,
    meta_inputs: Tensor,
    learned_loss: LearnedLossFn,
    meta_loss: MetaLossFn,
    phi: Sequence[Tensor],
    *,
    grad_clip: float | None = None,
) -> MetaStep:
    """Meta-gradient of `meta_loss` at the optimiser's lookahead, with respect to `phi`.

    Args:
        model: the base model (its outputs are a dict of head tensors).
        optimizer: the base optimiser; its next step is the lookahead (not taken here).
        inputs, meta_inputs: the step's batch inputs and the meta batch's.
        learned_loss: outputs -> (learned loss, a scalar depending on `phi`; base losses [K]).
        meta_loss: outputs at θ' on `meta_inputs` -> the meta-objective, a scalar.
        phi: the loss network's parameters.
        grad_clip: the run's global gradient-norm clip, applied in the lookahead too.
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    rng_state = _rng_state(inputs.device)
    outputs = model(inputs)
    detached = {head: value.detach().requires_grad_() for head, value in outputs.items()}
    learned, base = learned_loss(detached)
    heads = [head for head in detached]
    output_grads = torch.autograd.grad(
        learned, [detached[h] for h in heads], create_graph=True, allow_unused=True
    )
    used = [i for i, grad in enumerate(output_grads) if grad is not None]
    heads = [heads[i] for i in used]
    output_grads = [output_grads[i] for i in used]
    # g = J_θᵀ ∇_f ℓφ: an ordinary backward pass through the model.
    model_grads = torch.autograd.grad(
        [outputs[h] for h in heads],
        list(params.values()),
        grad_outputs=[grad.detach() for grad in output_grads],
        allow_unused=True,
    )
    gradients = {n: g for n, g in zip(params, model_grads, strict=True) if g is not None}
    leaves = {n: g.detach().requires_grad_() for n, g in gradients.items()}
    ahead = optimizer_lookahead(optimizer, params, leaves, grad_clip=grad_clip)
    # The extra forward passes run on copies of the buffers (BatchNorm statistics move once a
    # step, as in plain training).
    scratch = {n: b.clone() for n, b in model.named_buffers()}
    meta_value = meta_loss(functional_call(model, {**ahead, **scratch}, (meta_inputs,)))
    # v = (∂θ'/∂g)ᵀ ∇θ' L: the meta-objective's backward pass, then the (elementwise) step's.
    direction = torch.autograd.grad(meta_value, list(leaves.values()), allow_unused=True)
    tangents = {
        n: (d if d is not None else torch.zeros_like(leaves[n]))
        for n, d in zip(leaves, direction, strict=True)
    }
    # u = J_θ v, with the same random draws (dropout) as the forward pass above.
    output_tangents = _output_tangents(model, params, tangents, inputs, heads, rng_state, scratch)
    meta_gradient = torch.autograd.grad(
        output_grads, list(phi), grad_outputs=output_tangents, allow_unused=True
    )
    return MetaStep(
        meta_loss=meta_value.detach(),
        meta_gradient=list(meta_gradient),
        gradients={n: g.detach() for n, g in gradients.items()},
        base_losses=base.detach(),
        learned_loss=learned.detach(),
    )


def _output_tangents(
    model: nn.Module,
    params: Mapping[str, Tensor],
    tangents: Mapping[str, Tensor],
    inputs: Tensor,
    heads: list[str],
    rng_state: tuple[Tensor, Tensor | None],
    buffers: Mapping[str, Tensor],
) -> tuple[Tensor, ...]:
    """J_θ v for the outputs `heads`: forward mode, or two reverse passes where a module has no
    forward-mode rule."""
    primals = {n: params[n].detach() for n in tangents}

    def heads_of(values: Mapping[str, Tensor]) -> tuple[Tensor, ...]:
        with torch.random.fork_rng(devices=_devices(inputs.device)):
            _set_rng_state(inputs.device, rng_state)
            outputs = functional_call(model, {**values, **buffers}, (inputs,))
        return tuple(outputs[h] for h in heads)

    try:
        _, output_tangents = jvp(heads_of, (primals,), (dict(tangents),))
        return output_tangents
    except (RuntimeError, NotImplementedError):
        return double_vjp_tangents(heads_of, primals, tangents)


def double_vjp_tangents(
    function: Callable[[Mapping[str, Tensor]], tuple[Tensor, ...]],
    primals: Mapping[str, Tensor],
    tangents: Mapping[str, Tensor],
) -> tuple[Tensor, ...]:
    """J v by reverse mode twice: J v = ∂/∂w ⟨Jᵀ w, v⟩ (for modules without forward-mode AD)."""
    leaves = {n: p.detach().requires_grad_() for n, p in primals.items()}
    outputs = function(leaves)
    duals = [torch.zeros_like(o, requires_grad=True) for o in outputs]
    pulled = torch.autograd.grad(
        outputs, list(leaves.values()), grad_outputs=duals, create_graph=True, allow_unused=True
    )
    inner = sum(
        (p * tangents[n]).sum() for n, p in zip(leaves, pulled, strict=True) if p is not None
    )
    return torch.autograd.grad(inner, duals, allow_unused=True, materialize_grads=True)


def _devices(device: torch.device) -> list[torch.device]:
    return [device] if device.type == "cuda" else []


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(device: torch.device, state: tuple[Tensor, Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)
