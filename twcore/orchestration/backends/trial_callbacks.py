"""Callbacks that reach a trial's run wherever it runs: in this process, a worker, a Ray task.

A backend cannot hand a Python object to a worker process, so a trial's callbacks travel as a
*callback spec*: JSON text naming a factory inside twcore (``"module:function"``) and the plain
arguments it is called with. The serial backend builds the callbacks from the spec in this
process; a worker process finds the spec in its environment (:data:`CALLBACKS_ENV`) and
``twcore run``/``twcore resume`` build them there. The spec names code, so only functions in
twcore's own modules that are marked with :func:`callback_factory` are called from it.

Every worker process also gets :class:`StopWhenOrphaned`: if the sweep or tune process that
started it dies (even by SIGKILL), the trial checkpoints and stops rather than training on
unobserved and holding its run directory's lock against the process that resumes it.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from twcore.contract.callbacks import Callback
from twcore.contract.errors import UsageError

CALLBACKS_ENV = "TWCORE_TRIAL_CALLBACKS"
"""The environment variable holding a worker's callback spec."""
WORKER_ENV = "TWCORE_TRIAL_WORKER"
"""Set (to ``1``) in the environment of every trial worker process."""
PARENT_ENV = "TWCORE_TRIAL_PARENT"
"""The pid of the process that started a trial worker (its sweep, tune or Ray worker)."""
_TRUSTED_PREFIX = "twcore."
_FACTORIES: set[str] = set()

F = TypeVar("F", bound=Callable[..., list[Callback]])


def callback_factory(function: F) -> F:
    """Mark `function` (in a twcore module) as one a callback spec may name."""
    _FACTORIES.add(f"{function.__module__}:{function.__qualname__}")
    return function


def callback_spec(factory: str, arguments: Mapping[str, Any]) -> str:
    """The spec of callbacks built by ``factory(**arguments)`` (`factory`: ``module:function``
    inside twcore, returning a list of :class:`~twcore.contract.callbacks.Callback`)."""
    return json.dumps({"factory": factory, "arguments": dict(arguments)}, sort_keys=True)


def callbacks_for(spec: str | None) -> list[Callback]:
    """The callbacks a spec describes (none for None).

    Raises:
        UsageError: the spec is not valid JSON, names a factory outside twcore, or the factory
            cannot be imported.
    """
    if not spec:
        return []
    try:
        parsed = json.loads(spec)
        module_name, function_name = str(parsed["factory"]).split(":", 1)
        arguments = dict(parsed.get("arguments", {}))
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{CALLBACKS_ENV}: not a callback spec ({exc}): {spec[:200]}") from exc
    if not module_name.startswith(_TRUSTED_PREFIX):
        raise UsageError(
            f"{CALLBACKS_ENV}: factory {module_name}:{function_name} is outside twcore; only "
            f"factories in {_TRUSTED_PREFIX}* modules are run"
        )
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise UsageError(
            f"{CALLBACKS_ENV}: cannot load {module_name}:{function_name}: {exc}"
        ) from exc
    if f"{module_name}:{function_name}" not in _FACTORIES:
        raise UsageError(
            f"{CALLBACKS_ENV}: {module_name}:{function_name} is not a callback factory"
        )
    return list(factory(**arguments))


def worker_callbacks() -> list[Callback]:
    """The callbacks of a trial worker process: its spec's, and :class:`StopWhenOrphaned`
    (none outside a worker)."""
    if os.environ.get(WORKER_ENV) != "1":
        return []
    parent = os.environ.get(PARENT_ENV, "")
    watch = [StopWhenOrphaned(int(parent))] if parent.isdigit() else []
    return [*watch, *callbacks_for(os.environ.get(CALLBACKS_ENV))]


class StopWhenOrphaned(Callback):
    """Stops the run (with a checkpoint; status ``stopped``) once the process that started
    this one is gone: the kernel then gives this process another parent. The parent's pid
    comes from the environment, so a worker that started after its parent died (still
    importing when the parent was killed) stops at its first step too."""

    def __init__(self, parent: int) -> None:
        self.parent = parent

    def should_stop(self, step: int) -> bool:
        return os.getppid() != self.parent
