"""Any ``nn.Module`` as a twcore model: your trunk, plus one linear head per head of the task's
spec, without subclassing :class:`~twcore.contract.model.Model`.

::

    from torch import nn
    from twcore.contract import model_from_trunk

    SmallCNN = model_from_trunk(lambda spec: nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten()))
    twcore.register("model", "small-cnn", SmallCNN)

The trunk maps inputs ``[B, *input_shape]`` to features ``[B, F]``; F is read by passing one
zero example through it. :func:`model_from_trunk` returns a model *class*: each run builds a
fresh trunk (under the run's seed), so seeds differ in their initialisation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from twcore.contract.model import Model
from twcore.contract.spec import TaskSpec

TrunkFactory = Callable[[TaskSpec], nn.Module]
"""Builds a trunk for a task's spec (inputs [B, *spec.input_shape] -> features [B, F])."""


def model_from_trunk(trunk: TrunkFactory | nn.Module, *, name: str = "TrunkModel") -> type[Model]:
    """A model class: `trunk` shared by all heads, one ``nn.Linear(F, head.size)`` per head.

    Args:
        trunk: a function of the task's spec returning a fresh trunk (recommended), or a module,
            which each run deep-copies and re-initialises (``reset_parameters`` of every
            submodule that has one).
        name: the class's name (shown in errors and reprs).
    """
    if isinstance(trunk, nn.Module):
        template = trunk

        def build(spec: TaskSpec) -> nn.Module:
            fresh = copy.deepcopy(template)
            for module in fresh.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
            return fresh

        factory: TrunkFactory = build
    elif callable(trunk):
        factory = trunk
    else:
        raise TypeError(
            f"trunk must be an nn.Module or a function of the task's spec, got {trunk!r}"
        )
    return type(name, (TrunkModel,), {"build_trunk": staticmethod(factory), "__module__": __name__})


class TrunkModel(Model):
    """The base of the classes :func:`model_from_trunk` returns."""

    build_trunk: Callable[[TaskSpec], nn.Module]

    def __init__(self, config: Any, spec: TaskSpec) -> None:
        super().__init__(config, spec)
        self.trunk = self.build_trunk(spec)
        if not isinstance(self.trunk, nn.Module):
            raise TypeError(f"the trunk factory returned {self.trunk!r}, not an nn.Module")
        features = self._feature_size(spec)
        self.heads = nn.ModuleDict({h.name: nn.Linear(features, h.size) for h in spec.heads})

    def _feature_size(self, spec: TaskSpec) -> int:
        was_training = self.trunk.training
        self.trunk.eval()
        try:
            with torch.no_grad():
                features: Tensor = self.trunk(torch.zeros(1, *spec.input_shape))
        finally:
            self.trunk.train(was_training)
        if features.dim() != 2:
            raise ValueError(
                f"the trunk maps one example of shape {tuple(spec.input_shape)} to "
                f"{tuple(features.shape[1:])}; it must return features [B, F] (add nn.Flatten())"
            )
        return int(features.shape[1])
