"""The shape of the house, checked: the contract is a leaf, the core has no import cycle, the core
names no plugin, and every plugin package keeps the one folder convention.

Layers of the core, each importing only those above it:

1. ``twcore.autodiff`` — autograd helpers (torch only);
2. ``twcore.contract`` — what plugin authors implement and use (torch and pluggy);
3. ``twcore.orchestration`` — registry, config, engine, tracking, sweeps, reports, CLI;
4. ``twcore.testing`` — the plugin author's test kit, which drives the orchestration.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from twcore.orchestration.registry import KINDS, get_registry

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "twcore"
LAYERS = ("twcore.autodiff", "twcore.contract", "twcore.orchestration", "twcore.testing")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _core_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in CORE.rglob("*.py")}


def _imports(path: Path, modules: set[str]) -> Iterator[str]:
    """Every core module `path` imports, at module level, inside functions or under
    TYPE_CHECKING alike (``from pkg import sub`` counts as importing the submodule)."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path.parent)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    yield f"{base}.{alias.name}"
                elif base in modules:
                    yield base


def _parents(module: str) -> Iterator[str]:
    """The packages above `module` (``a.b.c`` -> ``a.b``, ``a``)."""
    parts = module.split(".")
    yield from (".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1))


def _graph() -> dict[str, set[str]]:
    """Module -> the core modules it imports, the packages Python initialises on the way
    included (importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first), except the
    importer's own packages, which are initialised before it runs."""
    modules = _core_modules()
    names = set(modules)
    graph = {}
    for name, path in modules.items():
        own = set(_parents(name))
        direct = set(_imports(path, names))
        implicit = {parent for target in direct for parent in _parents(target)} & names
        graph[name] = (direct | implicit) - own - {name}
    return graph


def _layer(module: str) -> int | None:
    for index, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return index
    return None


def test_the_core_has_no_import_cycle_not_even_a_deferred_one():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = [*stack[stack.index(target) :], target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_each_layer_imports_only_the_layers_above_it():
    wrong = []
    for module, targets in _graph().items():
        layer = _layer(module)
        for target in targets:
            other = _layer(target)
            if layer is not None and other is not None and other > layer:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_contract_imports_nothing_but_torch_and_pluggy():
    """In a fresh interpreter: the contract (its weighting modules and the autodiff layer
    included) brings in no package but itself, and no orchestration module."""
    probe = (
        "import sys\n"
        "import torch, pluggy\n"
        "before = {m.split('.')[0] for m in sys.modules}\n"
        "import twcore.contract, twcore.contract.weighting, twcore.contract.weighting_method\n"
        "import twcore.contract.activations, twcore.autodiff\n"
        "after = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(after - before - set(sys.stdlib_module_names)))\n"
        "print(sorted(m for m in sys.modules if m.startswith('twcore.')"
        " and not m.startswith(('twcore.contract', 'twcore.autodiff', 'twcore.version'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    new_packages, core_modules = result.stdout.splitlines()
    assert new_packages == "['twcore']", new_packages
    assert core_modules == "[]", core_modules


def _plugin_names() -> set[str]:
    registry = get_registry()
    return {name for kind in KINDS for name in registry.names(kind)}


NOT_PLUGIN_NAMES = {
    # (file, word): why the word there is not the plugin of that name
    ("twcore/contract/optim.py", "linear"): "a learning-rate schedule (optim.schedule=linear)",
    ("twcore/contract/schedule.py", "linear"): "a learning-rate schedule (optim.schedule=linear)",
}


def test_the_core_names_no_plugin():
    names = _plugin_names()
    assert {"ew", "mlp", "toy-multitask"} <= names
    found = []
    for module, path in _core_modules().items():
        if module.startswith("twcore.testing"):
            continue  # the test kit's own reference plugins live there
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            literal = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if literal and node.value in names:
                where = str(path.relative_to(ROOT))
                if (where, node.value) not in NOT_PLUGIN_NAMES:
                    found.append(f"{where}:{node.lineno}: {node.value!r}")
    assert not found, "plugin names in the core:\n" + "\n".join(found)


PLUGIN_DIRS = sorted(p.parent for p in ROOT.glob("plugins/*/*/pyproject.toml"))
ALLOWED = {"pyproject.toml", "README.md", "src", "tests", "benchmarks", "docs"}


@pytest.mark.parametrize("plugin", PLUGIN_DIRS, ids=[p.name for p in PLUGIN_DIRS])
def test_every_plugin_package_keeps_the_folder_convention(plugin: Path):
    tracked = subprocess.run(
        ["git", "ls-files", "--", "."], cwd=plugin, capture_output=True, text=True, check=True
    ).stdout.split()
    top = {name.split("/")[0] for name in tracked}
    assert top <= ALLOWED, f"{plugin.name}: unexpected {sorted(top - ALLOWED)}"
    assert {"pyproject.toml", "README.md", "src", "tests"} <= top
    packages = {name.split("/")[1] for name in tracked if name.startswith("src/")}
    assert len(packages) == 1 and next(iter(packages)).startswith("twcore_"), packages
    assert any(name.startswith("tests/test_") for name in tracked), "no test file"
    assert 'where = ["src"]' in (plugin / "pyproject.toml").read_text()
