"""Saying why a run failed: which plugin raised (a method, task or model), in which phase of the
run and at which step — or, when no plugin is to blame (a full disk), what the engine was doing.

A bare ``TypeError: ...`` from inside a run does not say whose code failed. The culprit is the
plugin owning the innermost frame of the traceback (a model's ``forward`` called by a method's
``train_step`` is the model's fault). When no plugin frame is on the traceback, the plugin whose
call was running is named (a core helper raising on a plugin's behalf); outside plugin calls,
no plugin is named.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from dataclasses import dataclass

from twcore.contract.errors import TwcoreError, first_line
from twcore.orchestration.registry import Registration

_WHOLE_MODULE = frozenset({"twcore", "__main__", "tests"})
"""Top-level packages whose plugins are told apart by their whole module name: the test kit's
reference plugins inside twcore, plugins of a script, plugins of the test suite."""


@dataclass(frozen=True)
class Phase:
    """What the engine is doing: a description, and the plugin section whose call it is (None
    for the engine's own work)."""

    description: str
    owner: str | None = None


class RunFailure(TwcoreError):
    """A run raised: the message names the plugin to blame (if any, with its distribution and
    version), the phase and the step. Exit code 1 (the input was fine, the code or the machine
    failed)."""

    def __init__(
        self, message: str, *, plugin: Registration | None, phase: str, step: int | None
    ) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.phase = phase
        self.step = step

    def describe(self) -> dict[str, object]:
        """The failure as plain data (``summary.json``'s ``failure``)."""
        plugin = None
        if self.plugin is not None:
            source = self.plugin.source
            plugin = {
                "kind": self.plugin.kind,
                "name": self.plugin.name,
                "distribution": source.distribution,
                "version": source.version,
            }
        return {"plugin": plugin, "phase": self.phase, "step": self.step}


def run_failure(
    exc: BaseException,
    *,
    phase: Phase,
    step: int | None,
    plugins: Mapping[str, Registration],
) -> RunFailure:
    """A :class:`RunFailure` for `exc`, raised while the engine was in `phase`."""
    culprit = innermost_plugin(exc, plugins, prefer=phase.owner)
    if culprit is None and phase.owner is not None:
        culprit = plugins.get(phase.owner)
    where = phase.description + (f" at step {step}" if step is not None else "")
    raised = f"{type(exc).__name__}: {first_line(exc)} ({where})"
    if culprit is None:
        return RunFailure(raised, plugin=None, phase=phase.description, step=step)
    source = culprit.source
    origin = f"{source.distribution} {source.version}" if source.distribution else "in-process"
    message = f"{culprit.kind} '{culprit.name}' ({origin}) raised {raised}"
    return RunFailure(message, plugin=culprit, phase=phase.description, step=step)


def innermost_plugin(
    exc: BaseException, plugins: Mapping[str, Registration], *, prefer: str | None = None
) -> Registration | None:
    """The plugin whose code holds the innermost frame of `exc`'s traceback, if any (when one
    package provides several of the run's plugins, the `prefer` section's)."""
    by_package: dict[str, list[Registration]] = {}
    for section, registration in plugins.items():
        module = registration.class_path.partition(":")[0]  # without importing it
        owners = by_package.setdefault(_package(module), [])
        if section == prefer:
            owners.insert(0, registration)
        else:
            owners.append(registration)
    culprit = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        owners = by_package.get(_package(frame.f_globals.get("__name__", "")))
        if owners:
            culprit = owners[0]
    return culprit


def _package(module: str) -> str:
    """The package a plugin's code lives in: its top-level package, or the module itself (see
    :data:`_WHOLE_MODULE`)."""
    top = module.split(".")[0]
    return module if top in _WHOLE_MODULE else top
