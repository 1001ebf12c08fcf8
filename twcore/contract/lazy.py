"""Package attributes imported on first use, named once (PEP 562).

A package whose ``__init__`` re-exports its classes imports everything they need (torch, a
solver, gymnasium) whenever any of its modules is imported, its plugin entry point included. To
keep importing it cheap, write the re-exports under ``if TYPE_CHECKING:`` (type checkers and
editors read them as usual) and let this module load each name when it is first read::

    from typing import TYPE_CHECKING

    from twcore.contract.lazy import lazy_exports

    if TYPE_CHECKING:
        from my_package.method import MyMethod, MyMethodConfig

    __all__ = ["MyMethod", "MyMethodConfig"]
    if not TYPE_CHECKING:  # type checkers see the imports above, and no catch-all __getattr__
        __getattr__, __dir__ = lazy_exports(__name__, __file__)

The names and their modules are read from the ``from ... import ...`` statements of the ``if
TYPE_CHECKING:`` block of the file itself (absolute or relative), once, on the first lookup, so
they are written in one place. The package's submodules stay reachable as attributes
(``package.submodule`` imports it), as they were when the ``__init__`` imported them.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any


def lazy_exports(package: str, file: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package that imports its re-exports lazily.

    Args:
        package: the package's ``__name__``.
        file: the package's ``__file__`` (its ``if TYPE_CHECKING:`` imports are the exports).

    Returns:
        ``(__getattr__, __dir__)`` to assign at the package's top level. ``__getattr__`` imports
        the module a name comes from, caches the value in the package, and raises
        :class:`AttributeError` for names the block does not import.
    """
    sources: dict[str, tuple[str, str]] = {}
    read = False

    def exports() -> dict[str, tuple[str, str]]:
        nonlocal read
        if not read:
            sources.update(_type_checking_imports(_source(package, file), package))
            read = True
        return sources

    def __getattr__(name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):  # probes such as __wrapped__
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if name in exports():
            module, original = exports()[name]
            value = _attribute(module, original)
        elif _is_submodule(f"{package}.{name}"):
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(exports()))

    return __getattr__, __dir__


def _is_submodule(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent that is not an importable package
        return False


def _attribute(module: str, name: str) -> Any:
    """``from module import name``: the attribute, or else the submodule ``module.name``."""
    imported = importlib.import_module(module)
    try:
        return getattr(imported, name)
    except AttributeError:
        return importlib.import_module(f"{module}.{name}")


def _source(package: str, file: str) -> str:
    """The package's source: through its loader (zip imports too), else from `file`."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    loader = spec.loader if spec is not None else None
    get_source = getattr(loader, "get_source", None)
    text = get_source(package) if get_source is not None else None
    return text if text is not None else Path(file).read_text(encoding="utf-8")


def _type_checking_imports(source: str, package: str) -> dict[str, tuple[str, str]]:
    """Exported name → (absolute module, name there), from the ``if TYPE_CHECKING:`` block of
    the package's `source`."""
    tree = ast.parse(source)
    names: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if not (isinstance(node, ast.If) and _is_type_checking(node.test)):
            continue
        for statement in node.body:
            if isinstance(statement, ast.ImportFrom):
                module = _absolute(statement, package)
                for alias in statement.names:
                    names[alias.asname or alias.name] = (module, alias.name)
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(statement: ast.ImportFrom, package: str) -> str:
    """The absolute module of an import in the ``__init__`` of `package`."""
    relative = "." * statement.level + (statement.module or "")
    return importlib.util.resolve_name(relative, package) if statement.level else relative
