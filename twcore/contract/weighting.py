"""Per-step weightings: rules that turn the K losses of a step into gradients and weights, usable
in any training loop (the engine's adapter for them is
:class:`~twcore.contract.weighting_method.WeightingMethod`).

In your own loop (any ``nn.Module``, any ``torch.optim`` optimiser, any data)::

    rule = GradCos(num_objectives=2, main=0)     # a Weighting from a method plugin
    for inputs, targets in loader:
        losses = torch.stack([main_loss(...), aux_loss(...)])
        optimizer.zero_grad()
        step = rule.backward(losses, shared=list(model.trunk.parameters()))
        optimizer.step()
        log(step.weights, step.logs)

``backward`` accumulates into ``.grad`` of every parameter the losses reach, as
``loss.backward()`` does, so zero the gradients first. `shared` are the tensors the objectives
share: the parameters on which a rule compares their gradients (a trunk), or, for a rule that
accepts it, a shared representation (the trunk's output). A rule holds its own state
(``state_dict``/``load_state_dict``, tensors and numbers only) and logs nothing: it returns what
it used and measured, and the caller logs it.

Rules that need only inner products of the objectives' gradients (``uses_gram``: GradCos, L-DRO
on parameters) also take a ``gram`` source: a
:class:`~twcore.autodiff.layer_gram.GramRecorder` that watched the forward pass gives the K×K
Gram matrix without forming the K gradients, and the step's gradients from what computing it
left (no further backward pass where the recorder can give them all)::

    recorder = GramRecorder(trunk_params, model, cut=model.trunk)
    with recorder:
        losses = torch.stack([main_loss(...), aux_loss(...)])
    step = rule.backward(losses, shared=trunk_params, gram=recorder)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, cast, runtime_checkable

import torch
from torch import Tensor

from twcore.autodiff.graph import own_leaves


class GramSource(Protocol):
    """Something that gives the Gram matrix ⟨∇L_i, ∇L_j⟩ [K, K] of a step's losses on the
    shared parameters, keeping the losses' graph (e.g. a
    :class:`~twcore.autodiff.layer_gram.GramRecorder` that recorded the forward pass)."""

    def gram(self, losses: Tensor, *, retain_graph: bool = True) -> Tensor: ...


@runtime_checkable
class CombiningGramSource(GramSource, Protocol):
    """A :class:`GramSource` that also gives the step's weighted gradient on its parameters
    from what computing the Gram matrix left (a
    :class:`~twcore.autodiff.layer_gram.GramRecorder`): no further backward pass through them."""

    params: list[Tensor]

    def weighted_gradients(self, weights: Tensor) -> list[Tensor] | None: ...


@runtime_checkable
class OwnGradientSource(Protocol):
    """A Gram source that also gives the objectives' own parameters' (the heads') gradient
    Σ_k b_k ∇L_k from the pass that computed the Gram matrix (a
    :class:`~twcore.autodiff.layer_gram.GramRecorder` with a cut), or None where it cannot."""

    def own_gradients(
        self, tensors: Sequence[Tensor], coefficients: Tensor | None = None
    ) -> list[Tensor] | None: ...

    def own_tensors(
        self, shared: Sequence[Tensor], params: Iterable[Tensor]
    ) -> list[Tensor] | None: ...


@runtime_checkable
class OwnGradientHandOver(Protocol):
    """An :class:`OwnGradientSource` that can hand its kept gradients over to the step without
    a copy, forgetting them (:meth:`~twcore.autodiff.layer_gram.GramRecorder.take_own_gradients`);
    the step uses it where a source offers it."""

    def take_own_gradients(
        self, tensors: Sequence[Tensor], coefficients: Tensor | None = None
    ) -> list[Tensor] | None: ...


def _offers(source: object, *methods: str) -> bool:
    """Whether `source` has each of `methods` (what one of the Protocols above names): checked
    by attribute, since isinstance with a runtime Protocol walks its members on every call
    (tens of microseconds, on every step)."""
    return all(callable(getattr(source, name, None)) for name in methods)


def own_tensors(
    losses: Tensor,
    shared: Sequence[Tensor],
    params: Iterable[Tensor] | None = None,
    source: GramSource | None = None,
) -> list[Tensor]:
    """The leaves the losses reach other than the `shared` ones (each objective's own: a
    head), in `params`' order: from what `source` found while computing the Gram matrix where
    it can vouch for that (:class:`OwnGradientSource`, after its ``gram``), otherwise by walking
    the losses' graph (:func:`~twcore.autodiff.graph.own_leaves`)."""
    if params is not None and _offers(source, "own_gradients", "own_tensors"):
        params = list(params)  # read twice where the source cannot vouch for its answer
        found = cast(OwnGradientSource, source).own_tensors(shared, params)
        if found is not None:
            return found
    return own_leaves(losses, shared, params)


@dataclass
class WeightedStep:
    """What a weighting did on one step.

    Attributes:
        weights: [K] the weight each objective got (detached).
        logs: what else the rule measured (cosines, lookahead losses, ...): numbers, tensors or
            nested dicts of those, for the caller to log.
    """

    weights: Tensor
    logs: dict[str, Any] = field(default_factory=dict)


class Weighting(ABC):
    """A per-step weighting rule (see the module docstring).

    Attributes:
        num_objectives: K, the number of losses each step hands the rule.
        compares_gradients: whether the rule compares the objectives' gradients on the tensors
            they share (then the engine's adapter hands it the shared parameters).
        linear: whether a step's direction is Σ_k w_k ∇L_k with weights fixed before the step
            and ``backward`` keeps no state of its own, so that the gradients of micro-batches
            add up to the whole batch's (gradient accumulation). Exact when each objective's
            loss is a mean over the batch's examples (not a masked mean, a sum or a loss of the
            batch as a whole) and the model draws no randomness (dropout masks differ).
    """

    compares_gradients: ClassVar[bool] = False
    linear: ClassVar[bool] = False
    uses_gram: ClassVar[bool] = False
    """Whether the rule needs only the Gram matrix of the gradients on the shared parameters
    and accepts ``backward(..., gram=source)`` (a :class:`GramSource`)."""

    def __init__(self, num_objectives: int) -> None:
        if num_objectives < 1:
            raise ValueError(f"a weighting needs at least one objective, got {num_objectives}")
        self.num_objectives = num_objectives

    @abstractmethod
    def backward(
        self,
        losses: Tensor,
        shared: Sequence[Tensor] = (),
        *,
        params: Iterable[Tensor] | None = None,
    ) -> WeightedStep:
        """Accumulate the rule's update direction into ``.grad`` and return the weights.

        Args:
            losses: [K] the objectives' losses of this step, with their graph.
            shared: the tensors the objectives share (parameters, or a shared representation
                for rules that accept one; default for rules that compare gradients: the
                parameters two or more losses reach); rules that do not compare gradients ignore
                it.
            params: every parameter to receive a gradient, for rules that write gradients
                themselves; default: the leaves the losses' graph reaches.
        """

    def compares_this_step(self) -> bool:
        """Whether the next ``backward`` compares gradients (a rule may reuse its last
        comparison for a while); the caller records the forward pass for a Gram source only
        then."""
        return self.compares_gradients

    def check_losses(self, losses: Tensor) -> None:
        """ValueError unless `losses` is a finite [K] vector (a NaN would poison the state)."""
        if losses.dim() != 1 or losses.shape[0] != self.num_objectives:
            raise ValueError(
                f"{type(self).__name__} expects losses of shape [{self.num_objectives}], got "
                f"{tuple(losses.shape)}"
            )
        if not bool(torch.isfinite(losses.detach()).all()):
            raise ValueError(
                f"{type(self).__name__} got non-finite losses {losses.detach().tolist()}"
            )

    def state_dict(self) -> dict[str, Any]:
        """What the rule keeps between steps (tensors, numbers, strings and containers)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


class LossWeighting(Weighting):
    """A weighting whose step is ∇ Σ_k w_k L_k with weights w [K] computed from the step's
    losses (detached): group DRO, uncertainty weighting, DWA, random loss weighting, FAMO, and
    every rule holding its weights (:class:`HeldWeights`). A subclass implements
    :meth:`loss_weights`; the check of the losses, the weighted backward pass and the returned
    step are written here once."""

    @abstractmethod
    def loss_weights(self, losses: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """The weights [K] of this step and what the rule measured, from the detached losses
        [K] (the rule may update its own state here: the backward pass does not depend on it).
        """

    def backward(
        self,
        losses: Tensor,
        shared: Sequence[Tensor] = (),
        *,
        params: Iterable[Tensor] | None = None,
    ) -> WeightedStep:
        self.check_losses(losses)
        weights, logs = self.loss_weights(losses.detach())
        weighted_backward(losses, weights)
        return WeightedStep(weights.detach().to(losses.dtype).clone(), logs)


class HeldWeights(LossWeighting):
    """A weighting whose weights are a vector it holds, ``self.weights`` [K], set or moved by
    the rule outside the step (equal weighting's constant, αVIL's between-epoch update): each
    step accumulates ∇ Σ_k w_k L_k."""

    linear: ClassVar[bool] = True
    weights: Tensor

    def loss_weights(self, losses: Tensor) -> tuple[Tensor, dict[str, Any]]:
        return self.weights.to(losses), {}


def split_weighted_backward(
    losses: Tensor,
    weights: Tensor,
    shared: Sequence[Tensor],
    own: Sequence[Tensor],
    *,
    own_weights: Tensor | None = None,
) -> None:
    """Accumulate ∇ Σ_k w_k L_k into the `shared` tensors' ``.grad`` and ∇ Σ_k L_k into the
    `own` ones' (each objective's own parameters keep their own gradient; `own_weights` b
    makes that ∇ Σ_k b_k L_k): two backward calls, the first only through what reaches `own`
    (the heads). A tensor no loss reaches gets zeros (as the gradient rows give it). Frees the
    losses' graph."""
    _own_backward(losses, own, own_weights, retain_graph=True)
    weighted = torch.dot(weights.detach().to(losses), losses)
    torch.autograd.backward(weighted, inputs=list(shared))
    _zeros_where_missing((*shared, *own))


def _own_backward(
    losses: Tensor, own: Sequence[Tensor], own_weights: Tensor | None, *, retain_graph: bool
) -> None:
    """Accumulate ∇ Σ_k b_k L_k (b = `own_weights`, default ones) into the `own` tensors only
    (a backward pass through the heads)."""
    if not own:
        return
    head_loss = (
        losses.sum() if own_weights is None else torch.dot(own_weights.detach().to(losses), losses)
    )
    torch.autograd.backward(head_loss, inputs=list(own), retain_graph=retain_graph)


def _zeros_where_missing(tensors: Iterable[Tensor]) -> None:
    """Zeros as the ``.grad`` of each tensor no loss reached (as the gradient rows give it)."""
    for tensor in tensors:
        if tensor.grad is None:
            tensor.grad = torch.zeros_like(tensor)


def gram_weighted_backward(
    losses: Tensor,
    weights: Tensor,
    shared: Sequence[Tensor],
    own: Sequence[Tensor],
    source: GramSource,
    *,
    own_weights: Tensor | None = None,
) -> None:
    """:func:`split_weighted_backward` after `source` gave the Gram matrix: the shared
    tensors' Σ_k w_k ∇L_k from the source's kept gradients where it offers them for exactly
    these tensors (:class:`CombiningGramSource`), and the own tensors' (the heads') Σ_k b_k ∇L_k
    from it too where it can (:class:`OwnGradientSource`), otherwise from one backward pass
    through them; without the shared tensors' gradients, :func:`split_weighted_backward`."""
    combined = None
    params: list[Tensor] = []
    if _offers(source, "weighted_gradients") and hasattr(source, "params"):
        combining = cast(CombiningGramSource, source)
        params = combining.params
        if len(params) == len(shared) and {id(p) for p in params} == {id(t) for t in shared}:
            combined = combining.weighted_gradients(weights.detach())
    if combined is None:
        split_weighted_backward(losses, weights, shared, own, own_weights=own_weights)
        return
    heads = None
    if own and _offers(source, "own_gradients", "own_tensors"):
        coefficients = None if own_weights is None else own_weights.detach()
        if _offers(source, "take_own_gradients"):
            heads = cast(OwnGradientHandOver, source).take_own_gradients(own, coefficients)
        else:
            heads = cast(OwnGradientSource, source).own_gradients(own, coefficients)
    if heads is None:
        _own_backward(losses, own, own_weights, retain_graph=False)
    else:
        _accumulate_grads(own, heads)
    _accumulate_grads(params, combined)
    _zeros_where_missing(own)


def _accumulate_grads(tensors: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
    """Add each gradient into its tensor's ``.grad`` (tensors that need none are skipped)."""
    for tensor, grad in zip(tensors, grads, strict=True):
        if not tensor.requires_grad:
            continue
        if tensor.grad is None:
            tensor.grad = grad
        else:
            tensor.grad.add_(grad)


def weighted_backward(losses: Tensor, weights: Tensor) -> None:
    """Accumulate ∇ Σ_k w_k L_k into ``.grad`` (the weights are constants of the step)."""
    torch.dot(weights.detach().to(losses), losses).backward()
