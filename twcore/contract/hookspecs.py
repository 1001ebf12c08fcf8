"""The plugin contract of twcore: every hook a plugin can implement.

A plugin is a Python module that a distribution lists under the entry-point group ``twcore``::

    # pyproject.toml of your plugin package
    [project.entry-points.twcore]
    my-method = "my_package.plugin"

and that implements one or more hooks below, marked with :data:`hookimpl`::

    from twcore.contract.hookspecs import hookimpl

    @hookimpl
    def twcore_register_methods(register):
        register("my-method", "my_package.method:MyMethod")

Registering the class by its import path, as here, keeps the entry-point module light: twcore
imports ``my_package.method`` (and with it torch and whatever else the class needs) only when a
run, ``twcore show`` or ``twcore plugins --check`` uses the plugin, so ``twcore plugins``,
``--help`` and a run of another plugin never pay for it. Import nothing heavy at the top of the
entry-point module (``twcore.contract.hookspecs`` imports only pluggy); passing the class itself
(``register("my-method", MyMethod)``) works too, at the cost of importing it with the plugin list.

Each entry point is loaded on its own: a plugin that fails to import, implements a hook that is
not listed here, implements one with a wrong signature, or raises while registering is reported
by ``twcore plugins`` (with its distribution and version) and the other plugins keep working.
Two distributions registering one name make that name an error that names both.

Environment variables: ``TWCORE_DISABLE_PLUGIN_AUTOLOAD=1`` loads no entry points at all;
``TWCORE_PLUGINS=a,b`` loads only the entry points (or distributions) named ``a`` and ``b``;
``TWCORE_EXCLUDE_PLUGINS=a,b`` loads all but those (e.g. one of two plugins claiming one name).

Names are lowercase letters and digits, with one ``-``, ``_`` or ``.`` between them, starting
and ending with a letter or a digit (:data:`NAME_RULE`, matched against the whole name; e.g.
``group-dro``, ``mnist-multitask``). The registered
classes subclass :class:`twcore.contract.method.Method`, :class:`twcore.contract.task.Task` and
:class:`twcore.contract.model.Model` respectively, and declare their options as a dataclass in a
``Config`` class attribute (see :func:`twcore.contract.option`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeAlias, TypeVar

import pluggy

if TYPE_CHECKING:
    from twcore.contract.grids import ReproductionGrid
    from twcore.contract.method import Method
    from twcore.contract.model import Model
    from twcore.contract.task import Task

PROJECT = "twcore"
NAME_RULE = r"^[a-z0-9]+(?:[_.-][a-z0-9]+)*$"
"""What a plugin name must match (the registry refuses others, quoting this rule)."""
PluginClass = TypeVar("PluginClass", contravariant=True)

hookspec = pluggy.HookspecMarker(PROJECT)
"""Marks the hook specifications below (for twcore itself)."""

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin's hook implementations."""


class Register(Protocol[PluginClass]):
    """The callback a registration hook receives: ``register(name, cls)`` once per plugin (`cls`:
    the class, or its import path ``"package.module:Class"``, imported on first use), with
    ``default=True`` for the one a run uses when it names none of its kind (a distribution that
    is the obvious choice, as ``ew``, ``toy-multitask`` and ``mlp`` are in this repository)."""

    def __call__(self, name: str, cls: PluginClass, *, default: bool = False) -> None: ...


RegisterMethod: TypeAlias = Register["type[Method] | str"]
RegisterTask: TypeAlias = Register["type[Task] | str"]
RegisterModel: TypeAlias = Register["type[Model] | str"]


@hookspec
def twcore_register_methods(register: RegisterMethod) -> None:
    """Register method plugins: call ``register(name, MethodClass)`` once per method
    (``register(name, MethodClass, default=True)`` for the default method, see :class:`Register`;
    ``"package.module:MethodClass"`` in place of the class defers its import to first use).

    Called once per process, when plugins are first needed. `register` raises nothing for a
    name another distribution also registers; that conflict is reported when the name is used.
    ``MethodClass`` subclasses :class:`twcore.contract.method.Method`. Return nothing.
    """


@hookspec
def twcore_register_tasks(register: RegisterTask) -> None:
    """Register task plugins: call ``register(name, TaskClass)`` once per task.

    Called once per process, when plugins are first needed. ``TaskClass`` subclasses
    :class:`twcore.contract.Task` (usually :class:`twcore.contract.TensorTask`). Return nothing.
    """


@hookspec
def twcore_register_models(register: RegisterModel) -> None:
    """Register model plugins: call ``register(name, ModelClass)`` once per model.

    Called once per process, when plugins are first needed. ``ModelClass`` subclasses
    :class:`twcore.contract.Model` and is built as ``ModelClass(config, task_spec)``.
    Return nothing.
    """


RegisterGrid = Callable[["ReproductionGrid"], None]


@hookspec
def twcore_reproduction_grids(register: RegisterGrid) -> None:
    """Contribute paper-reproduction grids: call ``register(grid)`` with a
    :class:`twcore.contract.grids.ReproductionGrid` per experiment.

    Called by ``twcore reproduce``, which runs every installed plugin's grids as sweeps (its
    ``quick`` sweeps with ``--quick``) and writes one report over all of them. A plugin that
    raises here is reported and skipped. Return nothing.
    """
