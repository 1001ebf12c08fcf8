"""Griffe extension (loaded by mkdocstrings): twcore's docstrings cross-reference with Sphinx
roles (:class:`~twcore.contract.Method`, :meth:`stream`) and end a paragraph with ``::`` before
a code block. Markdown knows neither, so roles become links to the API pages where the object
is documented there (plain code otherwise: the reference is optional, so an object the site
does not render never fails the build), and ``::`` becomes ``:``."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|data|attr|exc|obj|const):`(~?)([^`]+)`")
LITERAL_BLOCK = re.compile(r"(\S)::$", re.MULTILINE)


class SphinxRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        _convert(obj, loader)

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        _convert(pkg, loader)  # on_object is not called for the top-level package itself


def _convert(obj: griffe.Object, loader: griffe.GriffeLoader) -> None:
    """Rewrite `obj`'s docstring in place (a second pass finds nothing left to change)."""
    if obj.docstring is None:
        return
    text = ROLE.sub(lambda match: _link(match, obj, loader), obj.docstring.value)
    obj.docstring.value = LITERAL_BLOCK.sub(r"\1:", text)


def _link(match: re.Match[str], obj: griffe.Object, loader: griffe.GriffeLoader) -> str:
    short, target = match.group(1) == "~", match.group(2).strip().rstrip("()")
    identifier = _resolve(target, obj, loader)
    title = target.rsplit(".", 1)[-1] if short else target
    return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'


def _resolve(target: str, obj: griffe.Object, loader: griffe.GriffeLoader) -> str:
    """The full path of `target` as written inside `obj`'s docstring: relative to `obj`, then
    to each enclosing class and module, else taken as written."""
    scope: griffe.Object | None = obj
    while scope is not None:
        candidate = f"{scope.path}.{target}"
        try:
            found = loader.modules_collection[candidate]
        except (KeyError, ValueError, griffe.AliasResolutionError):
            scope = scope.parent
            continue
        return _canonical(found, candidate)
    try:
        return _canonical(loader.modules_collection[target], target)
    except (KeyError, ValueError, griffe.AliasResolutionError):
        return target


def _canonical(found: griffe.Object | griffe.Alias, path: str) -> str:
    """Where a re-exported name (``twcore.contract.Method``) is defined, which is where the
    API pages document it."""
    try:
        return found.canonical_path
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return path
