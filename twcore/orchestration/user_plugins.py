"""Plugins defined in your own code (a script, a notebook, a module) rather than installed.

``twcore.register("task", "my-data", MyTask)`` adds a plugin to this process's registry; runs in
this process can use it at once. For the processes twcore starts (``local`` and ``ray``
workers and their retries), name the module that registers it: ``--plugins MODULE[,MODULE]`` on
the command line, ``twcore.import_plugins("MODULE")`` in Python, ``plugin_modules=[MODULE]`` in
a config file or override, or the ``TWCORE_PLUGIN_MODULES`` environment variable. Every process
twcore starts imports the named modules before it looks plugins up. Each run records them in
its ``config.yaml`` (``plugin_modules``, ``plugin_paths``), which ``twcore resume`` never
imports (a run directory is data, not code) but names in its error when a plugin is missing:
resume with ``--plugins``. A named module may also hold hook implementations
(``@hookimpl def twcore_reproduction_grids(register)``): they are registered like an installed
plugin's.

Before a sweep starts workers, :func:`check_workers_see` fails with a one-line error if a
plugin the trials use was registered by code the workers will not import, or if a process
started as a worker starts cannot see it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from twcore.contract.errors import ConfigError
from twcore.orchestration.plugin_modules import (
    find_from_working_directory,
    import_module_named,
    named_modules,
    remember,
)
from twcore.orchestration.registry import Registration, get_registry

if TYPE_CHECKING:
    from twcore.contract.method import Method
    from twcore.contract.model import Model
    from twcore.contract.task import Task


def register(
    kind: str,
    name: str,
    cls: type[Method] | type[Task] | type[Model],
    *,
    default: bool = False,
) -> None:
    """Add a plugin class defined in your code to this process's registry
    (``twcore.register``); runs in this process can use it at once, and so can the processes
    twcore starts if the calling module is a named plugin module (the module docstring).

    Args:
        kind: ``method``, ``task`` or ``model``.
        name: its name in configs (``task=NAME``): lowercase letters, digits and ``-_.``.
        cls: the class: a :class:`~twcore.contract.method.Method`,
            :class:`~twcore.contract.task.Task` or :class:`~twcore.contract.model.Model`
            subclass (e.g. from :func:`~twcore.contract.task_from_arrays`) — the class itself,
            already imported (an installed plugin's hook may name it by import path instead).
        default: offer it as its kind's default.

    Raises:
        ConfigError: an unknown kind, a bad name or class, or a name an installed plugin has.
    """
    caller = sys._getframe(1).f_globals.get("__name__", "__main__")
    get_registry().register(kind, name, cls, default=default, module=caller)


def import_plugins(*modules: str) -> list[ModuleType]:
    """Import `modules` (each a dotted module name) as plugin modules, in this process and in
    every process twcore starts from now on; return them.

    Raises:
        ConfigError: a module cannot be imported (the message names it and the reason).
    """
    names = [n.strip() for module in modules for n in module.split(",") if n.strip()]
    find_from_working_directory()
    registry = get_registry()  # first, so that it loads the installed plugins before these
    imported = []
    for name in names:
        imported.append(import_module_named(name))
        remember(name)
        registry.add_module_hooks(imported[-1])
        registry.mark_travelling(name)  # registered by an earlier plain import of it
    return imported


def check_workers_see(
    registrations: Sequence[Registration], environment: Mapping[str, str], *, backend: str
) -> None:
    """ConfigError before any trial starts if a worker would not know a plugin the trials use.

    A plugin registered in this process by a module that is not named is refused at once. If
    any module is named (workers import every named module), one process is started as a
    worker starts, on this machine, and asked for the plugins the trials use.

    Args:
        registrations: the method, task and model registrations of every trial.
        environment: the workers' environment.
        backend: the backend's name, for messages.
    """
    needed = {(r.kind, r.name): r for r in registrations}
    for (kind, name), registration in sorted(needed.items()):
        source = registration.source
        if source.distribution is None and not source.travels:
            raise ConfigError(
                f"{kind} '{name}' was registered by {source.name!r}, which {backend} workers do "
                "not import: put the twcore.register call in a module and name it with "
                "--plugins MODULE (or twcore.import_plugins('MODULE'))"
            )
    if named_modules():
        _probe(sorted(needed), environment, backend)


_PROBE = """
import json, sys
from twcore.contract.errors import TwcoreError
try:
    from twcore.orchestration.registry import get_registry
    registry = get_registry()
except TwcoreError as exc:
    sys.stderr.write(str(exc).splitlines()[0] + "\\n")
    raise SystemExit(2)
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump([[k, n] for k in ("method", "task", "model") for n in registry.names(k)], out)
"""
"""What a probe process runs: what its registry holds, written to a file (a named module may
print at import), or its one-line error."""


def _probe(needed: Sequence[tuple[str, str]], environment: Mapping[str, str], backend: str) -> None:
    """Start one process as a worker starts and ask it for the plugins the trials need."""
    with tempfile.TemporaryDirectory() as scratch:
        answer = Path(scratch) / "plugins.json"
        try:
            result = subprocess.run(
                [sys.executable, "-c", _PROBE, str(answer)],
                capture_output=True,
                text=True,
                env=dict(environment),
                timeout=300,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(
                f"a {backend} worker took over 300 s to load the plugins (a named module that "
                "does work at import?)"
            ) from None
        if result.returncode != 0 or not answer.exists():
            lines = result.stderr.strip().splitlines() or [f"exit code {result.returncode}"]
            raise ConfigError(f"a {backend} worker could not load the plugins: {lines[-1]}")
        seen = {tuple(pair) for pair in json.loads(answer.read_text(encoding="utf-8"))}
    for kind, name in needed:
        if (kind, name) not in seen:
            raise ConfigError(
                f"a {backend} worker does not see {kind} '{name}': name the module that "
                f"registers it with --plugins (workers import {named_modules() or 'none'})"
            )
