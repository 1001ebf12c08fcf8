"""AdaLFL's meta-gradient, exactly, computed one step late so that no pass is spent twice.

With f = f_θ(x) the model's outputs on the step's batch, ℓφ the learned loss, g = J_θᵀ a for
a = ∇_f ℓφ(f), the real step θ' = step(θ, g) and L the meta-objective at θ':

    ∂L/∂φ = (∂a/∂φ)ᵀ · J_θ · (∂θ'/∂g)ᵀ ∇θ' L

The step keeps three things (a :class:`PendingMetaGradient`): the graph of g as a function of
the cotangent a (the model's backward pass, built with ``create_graph``), the small loss
network's intermediates, from which the derivative of a in φ is written out
(:meth:`~twcore_method_adalfl.loss_network.LearnedGradientPass.phi_gradients`), and the
optimiser step's VJP in closed form
(:func:`twcore.autodiff.step_with_vjp`). The optimiser then takes its real step: θ' is the
model's next parameters. The next step's forward pass at θ' gives ∇θ' L (with the next
training batch as the meta batch this is the same forward pass the next step needs anyway);
then

    w = (∂θ'/∂g)ᵀ ∇θ' L      elementwise
    u = J_θ w = ∂⟨g(a), w⟩/∂a   the kept backward graph, differentiated once more in a
    ∂L/∂φ = (∂a/∂φ)ᵀ u        the loss network's reverse pass, written out

No forward pass is repeated and there is no second-order pass through the model in θ: a step
costs one forward pass, two backward passes (base loss, learned loss) and the kept graph's
backward pass, about 2.3 plain steps of matrix products. The tests check the result against the
textbook computation (a ``create_graph`` pass through the model and the differentiable
lookahead) and finite differences, in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from twcore.contract.errors import IncompatiblePairingError
from twcore_method_adalfl.cotangent_convolutions import cotangent_only_convolutions
from twcore_method_adalfl.optimizer_step_vjp import OptimizerStepVJP

PhiGradient = Callable[[Mapping[str, Tensor]], list[Tensor]]
"""head -> u (shaped like that head's outputs) ↦ ∂⟨u, a⟩/∂φ for the learned loss's slope a."""


@dataclass
class PendingMetaGradient:
    """What a step keeps so that the next one can compute its meta-gradient.

    Attributes:
        gradient_graph: name -> g (the learned loss's gradient on θ) as a graph in the output
            cotangents.
        output_cotangents: head -> a = ∇_f ℓφ, detached leaves that `gradient_graph` reads.
        phi_gradient: head -> u (shaped like a) ↦ ∂⟨u, a⟩/∂φ, in the order of φ's parameters.
        step_vjp: the optimiser step's VJP, z ↦ (∂θ'/∂g)ᵀ z.
        record: the step's inputs (batch, θ, RNG state, the VJP's tensors), enough to rebuild
            everything above after a checkpoint.
    """

    gradient_graph: dict[str, Tensor]
    output_cotangents: dict[str, Tensor]
    phi_gradient: PhiGradient
    step_vjp: OptimizerStepVJP
    record: dict[str, Any]

    def meta_gradient(self, lookahead_gradients: Mapping[str, Tensor | None]) -> list[Tensor]:
        """∂L/∂φ from ∇θ' L (name -> tensor; None or missing where L does not depend on it),
        in the order of φ's parameters."""
        pulled = self.step_vjp(lookahead_gradients)
        names = [n for n in pulled if n in self.gradient_graph]
        heads = list(self.output_cotangents)
        try:
            tangents = torch.autograd.grad(
                [self.gradient_graph[n] for n in names],
                [self.output_cotangents[h] for h in heads],
                grad_outputs=[pulled[n] for n in names],
                allow_unused=True,
            )
        except RuntimeError as error:
            raise _not_twice_differentiable(str(error).strip().splitlines()[0]) from error
        if any(tangent is None for tangent in tangents):
            # g = J_θᵀa is linear in a, so it always depends on it unless an op's backward
            # pass was cut from the graph (e.g. an autograd.Function marked once_differentiable).
            raise _not_twice_differentiable("its gradient does not depend on the output's")
        return self.phi_gradient(dict(zip(heads, tangents, strict=True)))


def _not_twice_differentiable(reason: str) -> IncompatiblePairingError:
    return IncompatiblePairingError(
        "method 'adalfl' needs a model whose backward pass can be differentiated again "
        f"(double backward), and this model's cannot: {reason}"
    )


@dataclass
class LearnedGradient:
    """The learned loss's gradient g = J_θᵀ ∇_f ℓφ at θ, with the graphs the meta-gradient needs.

    Attributes:
        gradients: name -> g, detached: what the optimiser steps with.
        learned_loss: the learned loss, detached.
        gradient_graph: name -> g as a graph in `output_cotangents`.
        output_cotangents: head -> a = ∇_f ℓφ as detached leaves.
        phi_gradient: head -> u ↦ ∂⟨u, a⟩/∂φ.
    """

    gradients: dict[str, Tensor]
    learned_loss: Tensor
    gradient_graph: dict[str, Tensor]
    output_cotangents: dict[str, Tensor]
    phi_gradient: PhiGradient

    def pending(self, step_vjp: OptimizerStepVJP, record: dict[str, Any]) -> PendingMetaGradient:
        """What the next step needs, once the optimiser's step VJP is known."""
        return PendingMetaGradient(
            self.gradient_graph, self.output_cotangents, self.phi_gradient, step_vjp, record
        )


def forward_at_copy(model: nn.Module, inputs: Tensor) -> tuple[Any, dict[str, Tensor]]:
    """(outputs, leaves): the model's forward pass (its outputs as it returns them: a tensor or
    a dict of heads) at a requires-grad copy of its trainable parameters (buffers such as
    BatchNorm statistics are the model's own and move as usual). Its convolutions' backward
    passes are differentiable in their output gradients only, all the meta-gradient asks of
    them (:mod:`~twcore_method_adalfl.cotangent_convolutions`)."""
    leaves = {
        name: parameter.detach().clone().requires_grad_()
        for name, parameter in model.named_parameters()
        if parameter.requires_grad
    }
    with cotangent_only_convolutions(model):
        return functional_call(model, leaves, (inputs,)), leaves


def learned_gradient(
    outputs: Mapping[str, Tensor],
    leaves: Mapping[str, Tensor],
    output_gradients: Callable[
        [Mapping[str, Tensor]], tuple[Tensor, dict[str, Tensor], PhiGradient]
    ],
) -> LearnedGradient:
    """g = J_θᵀ a for `outputs` computed at `leaves`, with its graphs kept.

    Args:
        outputs: head -> the model's outputs, a graph in `leaves`.
        leaves: name -> the parameters `outputs` were computed at (requires-grad copies).
        output_gradients: detached outputs -> (the learned loss; head -> a = ∇_f ℓφ for the
            heads the learned loss reads; head -> u ↦ ∂⟨u, a⟩/∂φ), all detached.
    """
    learned, slopes, phi_gradient = output_gradients(
        {head: value.detach() for head, value in outputs.items()}
    )
    cotangents = {h: slope.detach().requires_grad_() for h, slope in slopes.items()}
    names = list(leaves)
    graph = torch.autograd.grad(
        [outputs[h] for h in cotangents],
        [leaves[n] for n in names],
        grad_outputs=list(cotangents.values()),
        create_graph=True,
        allow_unused=True,
    )
    gradient_graph = {n: g for n, g in zip(names, graph, strict=True) if g is not None}
    return LearnedGradient(
        gradients={n: g.detach() for n, g in gradient_graph.items()},
        learned_loss=learned,
        gradient_graph=gradient_graph,
        output_cotangents=cotangents,
        phi_gradient=phi_gradient,
    )


def rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    """The global RNG state (CPU, and the device's on CUDA): dropout's draws."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


@contextmanager
def replayed_rng(device: torch.device, state: tuple[Tensor, Tensor | None]) -> Iterator[None]:
    """Run with the RNG at `state` (the same dropout draws again); the current state is restored
    afterwards."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], device)
        yield
