"""mkdocs hook: API reference pages for the core's packages, one page per module, generated at
build time so that a module added to ``twcore.contract``, ``twcore.autodiff`` or
``twcore.testing`` is documented (and its docstrings checked by ``mkdocs build --strict``)
without anyone editing the docs.

A package's page is ``reference/api/<package>/index.md``: its docstring and a list of its
modules. In mkdocs.yml, the nav entry that names that page becomes a section holding the
package page and one page per module.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

PACKAGES = ("twcore.contract", "twcore.autodiff", "twcore.testing")


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def _modules(root: Path, package: str) -> list[str]:
    folder = root.joinpath(*package.split("."))
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def _index_page(package: str) -> str:
    return f"reference/api/{package}/index.md"


def _module_page(package: str, module: str) -> str:
    return f"reference/api/{package}/{module}.md"


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Expand each nav entry naming a package page into a section with its module pages."""
    root = _root(config)
    pages = {_index_page(package): package for package in PACKAGES}

    def expand(entries: list) -> None:
        for position, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            ((title, value),) = entry.items()
            if isinstance(value, list):
                expand(value)
            elif value in pages:
                package = pages[value]
                modules = [
                    {f"{package}.{module}": _module_page(package, module)}
                    for module in _modules(root, package)
                ]
                entries[position] = {title: [value, *modules]}

    expand(config.nav or [])
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    root = _root(config)
    for package in PACKAGES:
        modules = _modules(root, package)
        listing = "\n".join(f"- [`{package}.{module}`]({module}.md)" for module in modules)
        index = (
            f"::: {package}\n    options:\n      heading_level: 1\n      members: false\n\n"
            f"## Modules\n\n{listing}\n"
        )
        files.append(File.generated(config, _index_page(package), content=index))
        for module in modules:
            content = f"::: {package}.{module}\n    options:\n      heading_level: 1\n"
            files.append(File.generated(config, _module_page(package, module), content=content))
    return files
