"""Base class of model plugins: a shared trunk and one output module per task head."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from twcore.contract.options import NoConfig
from twcore.contract.spec import TaskSpec


class Model(nn.Module):
    """A model built from a task's spec.

    Subclasses set ``self.trunk`` (the shared part: inputs [B, *input_shape] -> features [B, F])
    and ``self.heads`` (an ``nn.ModuleDict`` with one module per ``spec.heads`` entry, features
    -> [B, head.size]). The default :meth:`forward` returns ``{head_name: output}``.

    Leading dims: a model maps inputs ``[*lead, *input_shape]`` to outputs ``[*lead, head.size]``
    for any number of leading dims. Tasks rely on it to apply one model per item, e.g. a
    decision instance of n items with F features each is ``[B, n, F]`` with ``input_shape=(F,)``,
    and its predictions are ``[B, n, size]``.

    Methods that weight objectives by their gradients work on :meth:`shared_parameters` (the
    trunk's); task heads get their own objective's gradient. Parameter names are those of
    ``named_parameters()``, so they work with ``torch.func.functional_call``.

    Class attributes:
        Config: the dataclass of this model's options (see :func:`twcore.contract.option`).
    """

    Config: ClassVar[type] = NoConfig
    run_defaults: ClassVar[dict[str, Any]] = {}
    """Run-level settings this plugin suggests, ``{dotted.key: value}`` (see
    :attr:`twcore.contract.method.Method.run_defaults`)."""

    trunk: nn.Module
    heads: nn.ModuleDict

    def __init__(self, config: Any, spec: TaskSpec) -> None:
        super().__init__()
        self.config = config
        self.spec = spec

    def features(self, inputs: Tensor) -> Tensor:
        """The shared representation [*lead, F] of inputs [*lead, *input_shape]."""
        features: Tensor = self.trunk(inputs)
        return features

    def predict_heads(self, features: Tensor) -> dict[str, Tensor]:
        """Each head's output from the shared representation."""
        return {name: head(features) for name, head in self.heads.items()}

    def forward(self, inputs: Tensor) -> dict[str, Tensor]:
        """``{head_name: output [*lead, head.size]}`` for inputs [*lead, *input_shape]."""
        return self.predict_heads(self.features(inputs))

    def named_shared_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Parameters shared by all heads (the trunk's), with their full names."""
        for name, parameter in self.named_parameters():
            if name.startswith("trunk."):
                yield name, parameter

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters shared by all heads, in a fixed order."""
        return [p for _, p in self.named_shared_parameters()]

    def named_head_parameters(self, head: str) -> Iterator[tuple[str, nn.Parameter]]:
        """Parameters that belong to one head only, with their full names."""
        prefix = f"heads.{head}."
        for name, parameter in self.named_parameters():
            if name.startswith(prefix):
                yield name, parameter

    def head_parameters(self, head: str) -> list[nn.Parameter]:
        """Parameters that belong to one head only."""
        return [p for _, p in self.named_head_parameters(head)]


def flat_input_size(spec: TaskSpec) -> int:
    """Number of input features once an example is flattened."""
    size = 1
    for dim in spec.input_shape:
        size *= int(dim)
    return size


def parameters_are_finite(module: nn.Module) -> bool:
    """Whether every parameter of `module` is finite (one device sync)."""
    flags = [torch.isfinite(p).all() for p in module.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


def parameters_shared_by_objectives(model: Model, spec: TaskSpec) -> list[nn.Parameter]:
    """Parameters that two or more objectives depend on: the shared trunk, and every head that
    serves several objectives (e.g. one θ head for all the tasks of ``ldro-points``). These are
    where gradient-based weighting methods compare the objectives' gradients."""
    objectives_per_head: dict[str, int] = {}
    for objective in spec.objectives:
        objectives_per_head[objective.head] = objectives_per_head.get(objective.head, 0) + 1
    parameters = list(model.shared_parameters())
    for head, count in objectives_per_head.items():
        if count > 1:
            parameters.extend(model.head_parameters(head))
    return parameters
