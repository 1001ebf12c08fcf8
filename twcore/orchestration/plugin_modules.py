"""Which modules of your own code hold plugins, so that every process twcore starts imports them.

``twcore.register`` (:mod:`twcore.orchestration.user_plugins`) adds a plugin to this process's
registry; a process twcore starts (a ``local`` or ``ray`` worker, a resumed run) knows it only if
it imports the module that registers it. The modules named with ``--plugins``,
``twcore.import_plugins`` or the ``TWCORE_PLUGIN_MODULES`` environment variable are kept in that
variable (and their import root in ``PYTHONPATH``), which every process started from here
inherits; the registry imports them when it is created.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from twcore.contract.errors import ConfigError

PLUGIN_MODULES_ENV = "TWCORE_PLUGIN_MODULES"
"""Comma-separated modules every twcore process imports before looking plugins up."""

_importing: list[str] = []
"""The named module being imported now, innermost last (registrations made meanwhile travel)."""


def named_modules() -> list[str]:
    """The modules named so far (``--plugins``, :func:`import_plugins`, the environment)."""
    value = os.environ.get(PLUGIN_MODULES_ENV, "")
    return list(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))


def registering_module() -> str | None:
    """The named plugin module whose import is running now, if any."""
    return _importing[-1] if _importing else None


def import_module_named(name: str) -> ModuleType:
    """Import the plugin module `name` (once); registrations it makes meanwhile are marked as
    travelling. ConfigError names the module and the reason if it cannot be imported."""
    if name in sys.modules:
        return sys.modules[name]
    _importing.append(name)
    try:
        module = importlib.import_module(name)
    except ConfigError:
        raise
    except (Exception, SystemExit) as exc:  # an ImportError, or the module's own bug
        raise ConfigError(
            f"plugin module {name!r} could not be imported: {type(exc).__name__}: {exc}; name a "
            "module importable from the current directory or PYTHONPATH"
        ) from exc
    finally:
        _importing.pop()
    return module


def remember(name: str) -> None:
    """Add `name` to the environment's list, and its import root to ``PYTHONPATH``, so that
    every process started from now on imports it too."""
    names = [*named_modules(), name]
    os.environ[PLUGIN_MODULES_ENV] = ",".join(dict.fromkeys(names))
    root = _import_root(name)
    if root is not None:
        _add_to_pythonpath(root)


def module_roots() -> list[str]:
    """The directories the named modules were found under (recorded with a run, so that a
    resume from another directory finds them)."""
    roots = (_import_root(name) for name in named_modules())
    return list(dict.fromkeys(root for root in roots if root is not None))


def add_search_paths(paths: list[str]) -> None:
    """Append the existing directories of `paths` to this process's ``sys.path`` (after
    everything there, so they cannot shadow an installed module) and to the ``PYTHONPATH`` of
    the processes it starts."""
    for path in paths:
        if not Path(path).is_dir():
            continue
        if path not in sys.path:
            sys.path.append(path)
        _add_to_pythonpath(path)


def find_from_working_directory() -> None:
    """Let modules in the working directory be named, as ``python -m`` does (the installed
    ``twcore`` script starts with its own directory on ``sys.path`` instead); appended, so
    they cannot shadow an installed module."""
    here = os.getcwd()
    if "" not in sys.path and here not in sys.path:
        sys.path.append(here)


def _add_to_pythonpath(path: str) -> None:
    """Append `path` to ``PYTHONPATH`` unless Python finds modules there anyway."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    installed = {str(Path(p).resolve()) for p in sys.path if p and "-packages" in p}
    if path not in paths and path not in installed:
        os.environ["PYTHONPATH"] = os.pathsep.join([*paths, path])


def _import_root(name: str) -> str | None:
    """The ``sys.path`` entry `name` is found under (None for a module not on disk)."""
    spec = importlib.util.find_spec(name.split(".")[0])
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return None
    origin = Path(spec.origin).resolve()
    root = origin.parent.parent if origin.name == "__init__.py" else origin.parent
    return str(root)
