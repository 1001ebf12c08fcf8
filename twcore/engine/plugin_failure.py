"""Naming the plugin behind an exception: which method, task or model raised, in which phase of
the run and at which step.

A bare ``TypeError: ...`` from inside a run does not say whose code failed. The culprit is the
plugin owning the innermost frame of the traceback (a model's ``forward`` called by a method's
``train_step`` is the model's fault); when no plugin frame is on the traceback (a core helper
raising on a plugin's behalf), the plugin that owns the phase is named.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from dataclasses import dataclass

from twcore.errors import TwcoreError
from twcore.registry import Registration


@dataclass(frozen=True)
class Phase:
    """What the engine was doing: a description and the plugin section that owns it, if any."""

    description: str
    owner: str | None = None


class PluginFailure(TwcoreError):
    """A plugin raised during a run; the message names it, its distribution and version, the
    phase and the step. Exit code 1 (the input was fine, the code failed)."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        plugin: Registration | None,
        phase: str,
        step: int | None,
    ) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.phase = phase
        self.step = step

    def describe(self) -> dict[str, object]:
        """The failure as plain data (``summary.json``'s ``failure``)."""
        plugin = self.plugin
        return {
            "plugin": None
            if plugin is None
            else {
                "kind": plugin.kind,
                "name": plugin.name,
                "distribution": plugin.source.distribution,
                "version": plugin.source.version,
            },
            "phase": self.phase,
            "step": self.step,
        }


def plugin_failure(
    exc: BaseException,
    *,
    phase: Phase,
    step: int | None,
    plugins: Mapping[str, Registration],
) -> PluginFailure:
    """A :class:`PluginFailure` for `exc`, raised while the engine was in `phase`."""
    culprit = innermost_plugin(exc, plugins, prefer=phase.owner)
    if culprit is None and phase.owner is not None:
        culprit = plugins.get(phase.owner)
    text = first_line(exc)
    where = phase.description + (f" at step {step}" if step is not None else "")
    if culprit is None:
        message = f"{type(exc).__name__}: {text} ({where})"
    else:
        source = culprit.source
        origin = f"{source.distribution} {source.version}" if source.distribution else "in-process"
        message = (
            f"{culprit.kind} '{culprit.name}' ({origin}) raised {type(exc).__name__}: {text} "
            f"({where})"
        )
    return PluginFailure(message, plugin=culprit, phase=phase.description, step=step)


def innermost_plugin(
    exc: BaseException, plugins: Mapping[str, Registration], *, prefer: str | None = None
) -> Registration | None:
    """The plugin whose code holds the innermost frame of `exc`'s traceback, if any (when one
    package provides several of the run's plugins, the `prefer` section's)."""
    by_package: dict[str, list[Registration]] = {}
    for section, registration in plugins.items():
        owners = by_package.setdefault(_package(registration.cls.__module__), [])
        owners.insert(0, registration) if section == prefer else owners.append(registration)
    culprit = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        module = frame.f_globals.get("__name__", "")
        owners = by_package.get(_package(module))
        if owners:
            culprit = owners[0]
    return culprit


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name if it has none)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def _package(module: str) -> str:
    """The package a plugin's code lives in: its top-level package, or the module itself for a
    plugin defined inside twcore (its test kit's reference plugins), a script or a test."""
    top = module.split(".")[0]
    return module if top in _WHOLE_MODULE else top


_WHOLE_MODULE = frozenset({"twcore", "__main__", "tests"})
