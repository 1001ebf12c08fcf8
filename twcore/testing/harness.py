"""Running plugins in memory for a few steps, with a registry built for the test."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from twcore.contract.hookspecs import hookimpl
from twcore.contract.method import StepResult
from twcore.orchestration.config.compose import ComposedConfig, compose
from twcore.orchestration.config.overrides import Override
from twcore.orchestration.engine.components import Components, build_components
from twcore.orchestration.registry import KINDS, PluginRegistry, PluginSource, get_registry
from twcore.orchestration.tracking import Tracker
from twcore.testing.reference import (
    REFERENCE_METHOD,
    REFERENCE_MODEL,
    REFERENCE_SOURCE,
    REFERENCE_TASK,
    ReferenceMethod,
    ReferenceModel,
    ReferencePlugins,
    ReferenceTask,
)

UNDER_TEST_SOURCE = PluginSource("under-test", "under-test", "0")


@dataclass(frozen=True)
class PluginEntry:
    """A plugin class to register under a name for a test."""

    kind: str
    name: str
    cls: type


def resolve(kind: str, plugin: str | type, default_name: str) -> PluginEntry:
    """A plugin given by installed name (looked up now) or by class (registered as given)."""
    reference = _REFERENCES.get((kind, plugin)) if isinstance(plugin, str) else None
    if reference is not None:
        return PluginEntry(kind, str(plugin), reference)
    if isinstance(plugin, str):
        return PluginEntry(kind, plugin, get_registry().get(kind, plugin).cls)
    return PluginEntry(kind, default_name, plugin)


_REFERENCES: dict[tuple[str, str], type] = {
    ("method", REFERENCE_METHOD): ReferenceMethod,
    ("task", REFERENCE_TASK): ReferenceTask,
    ("model", REFERENCE_MODEL): ReferenceModel,
}


def registry_with(entries: Sequence[PluginEntry]) -> PluginRegistry:
    """A registry holding only the reference plugins and `entries` (no autoloading)."""
    registry = PluginRegistry(autoload=False)
    registry.add_plugin(ReferencePlugins(), REFERENCE_SOURCE)
    reference_names = {kind: set(registry.names(kind)) for kind in KINDS}
    extra = [e for e in entries if e.name not in reference_names[e.kind]]
    if extra:
        status = registry.add_plugin(_EntriesPlugin(extra), UNDER_TEST_SOURCE)
        if status.status != "loaded":
            raise AssertionError(f"the plugin under test cannot be registered: {status.error}")
    return registry


class _EntriesPlugin:
    """A plugin object that registers given classes."""

    def __init__(self, entries: Sequence[PluginEntry]) -> None:
        self.entries = list(entries)

    def _register(self, kind: str, register: Any) -> None:
        for entry in self.entries:
            if entry.kind == kind:
                register(entry.name, entry.cls)

    @hookimpl
    def twcore_register_methods(self, register: Any) -> None:
        self._register("method", register)

    @hookimpl
    def twcore_register_tasks(self, register: Any) -> None:
        self._register("task", register)

    @hookimpl
    def twcore_register_models(self, register: Any) -> None:
        self._register("model", register)


def as_overrides(values: Mapping[str, Any]) -> list[Override]:
    """``{dotted.key: value}`` as overrides taken literally."""
    return [Override.of(key, value) for key, value in values.items()]


class Harness:
    """A run's components built in memory (no run directory, no W&B) to step by hand."""

    def __init__(self, registry: PluginRegistry, options: Mapping[str, Any]) -> None:
        self.composed: ComposedConfig = compose(as_overrides(options), registry=registry)
        self.tracker = Tracker([])
        self.components: Components = build_components(self.composed, self.tracker)
        run = self.composed.run
        self.stream = self.components.task.stream(
            "train",
            run.batch_size,
            seed=run.seed,
            device=self.components.device,
            model=self.components.model,
        )

    def step(self) -> StepResult:
        """One method step on the next training batch."""
        result = self.components.method.train_step(next(self.stream))
        self.components.context.step += 1
        return result

    def steps(self, count: int) -> list[StepResult]:
        """`count` method steps."""
        return [self.step() for _ in range(count)]

    def parameters(self) -> dict[str, torch.Tensor]:
        """A copy of the model's parameters."""
        return {k: v.detach().clone() for k, v in self.components.model.named_parameters()}


def plugin_harness(
    method: str,
    *,
    task: str = REFERENCE_TASK,
    model: str = REFERENCE_MODEL,
    options: Mapping[str, Any] | None = None,
) -> Harness:
    """A :class:`Harness` of plugins given by installed name (or the reference plugins), on the
    CPU with W&B off, for unit tests of one method's update rule.

    Args:
        method, task, model: plugin names.
        options: further ``{dotted.key: value}`` settings (they win over the defaults above).
    """
    registry = registry_with(
        [
            resolve("method", method, method),
            resolve("task", task, task),
            resolve("model", model, model),
        ]
    )
    base = {"method": method, "task": task, "model": model, "device": "cpu", "wandb.enabled": False}
    return Harness(registry, {**base, **(options or {})})
