"""Per-step weightings: rules that turn the K losses of a step into gradients and weights, usable
in any training loop, and the engine's one adapter for them.

In your own loop (any ``nn.Module``, any ``torch.optim`` optimiser, any data)::

    rule = GradCos(main=0)                       # a Weighting from a method plugin
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
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from twcore.contract.batch import Batch
from twcore.contract.method import Method, MethodContext, StepResult
from twcore.contract.model import parameters_shared_by_objectives


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
    """

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


def name_objectives(logs: dict[Any, Any], names: Sequence[str]) -> dict[Any, Any]:
    """`logs` with every integer key (a rule's per-objective value) replaced by that
    objective's name, in nested dicts too."""
    named: dict[Any, Any] = {}
    for key, value in logs.items():
        shown = names[key] if isinstance(key, int) and 0 <= key < len(names) else key
        named[shown] = name_objectives(value, names) if isinstance(value, dict) else value
    return named


def weighted_backward(losses: Tensor, weights: Tensor) -> None:
    """Accumulate ∇ Σ_k w_k L_k into ``.grad`` (the weights are constants of the step)."""
    torch.dot(weights.detach().to(losses.dtype), losses).backward()


def shared_parameters(model: nn.Module, spec: Any, *, method: str) -> list[nn.Parameter]:
    """The parameters several objectives share (a twcore model's trunk, and heads serving
    several objectives); ValueError naming `method` if there are none."""
    found = parameters_shared_by_objectives(model, spec)
    if not found:
        raise ValueError(
            f"{method} needs parameters shared by several objectives; this model and task "
            "share none"
        )
    return found


class WeightingMethod(Method):
    """The engine's adapter for a :class:`Weighting`: every step, the objectives' losses on the
    batch go to the rule, which writes the gradients; then the run's optimiser steps.

    A plugin implements :meth:`build_rule` (and, for rules comparing gradients on something
    other than the shared parameters, :meth:`losses_and_shared`); the rule's state is the
    method's checkpointed state.
    """

    def __init__(self, config: Any, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.rule = self.build_rule(config, ctx)

    @abstractmethod
    def build_rule(self, config: Any, ctx: MethodContext) -> Weighting:
        """The rule this method steps, from its options and the run's context."""

    def losses_and_shared(self, batch: Batch) -> tuple[Tensor, Sequence[Tensor]]:
        """The step's losses [K] and the tensors they share (default: the shared parameters,
        found once)."""
        if not hasattr(self, "_shared"):
            self._shared = parameters_shared_by_objectives(self.ctx.model, self.ctx.spec)
        return self.ctx.objective_losses(batch), self._shared

    def train_step(self, batch: Batch) -> StepResult:
        losses, shared = self.losses_and_shared(batch)
        if not bool(torch.isfinite(losses.detach()).all()):
            # Left to the engine, which stops the run as diverged naming the objective.
            return StepResult(losses=losses.detach())
        self.ctx.optimizer.zero_grad(set_to_none=True)
        step = self.rule.backward(losses, shared, params=self.ctx.model.parameters())
        self.ctx.optimizer_step()
        logs = name_objectives(step.logs, self.ctx.spec.objective_names)
        return StepResult(losses=losses.detach(), weights=step.weights, logs=logs)

    def state_dict(self) -> dict[str, Any]:
        return self.rule.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rule.load_state_dict(state)
