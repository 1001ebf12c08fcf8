"""No code in twcore or its plugins deserialises with a loader that can run code.

Checkpoints, cached data and configs are files someone else may have written (a shared run
directory, a downloaded checkpoint), so every loader must be one that only builds data: pickle and
its relatives run whatever a file names, ``torch.load`` does unless ``weights_only=True``,
``numpy.load`` does with ``allow_pickle=True``, and ``yaml.load`` and friends can build arbitrary
objects. The check reads the source with :mod:`ast`; it sees direct calls and imports, not a loader
reached through ``getattr``, ``importlib`` or a variable, which review still has to catch.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
SCANNED = ("twcore", "plugins")
FORBIDDEN_MODULES = frozenset(
    {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "joblib", "marshal"}
)
UNSAFE_YAML = frozenset(
    {"load", "unsafe_load", "full_load", "load_all", "unsafe_load_all", "full_load_all"}
)
# Conventional names a snippet or module may use; a file's own imports override them.
CONVENTIONAL_ALIASES = {"np": "numpy", "pd": "pandas"}


def unsafe_deserialisation(source: str, path: str) -> list[tuple[str, int, str]]:
    """Every (path, line, reason) in `source` where data could be loaded by running code."""
    tree = ast.parse(source, filename=path)
    aliases = {**CONVENTIONAL_ALIASES, **_import_aliases(tree)}
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            modules = []
        for module in modules:
            if module.split(".")[0] in FORBIDDEN_MODULES:
                problems.append((path, node.lineno, f"imports {module}, which can run code"))
        if isinstance(node, ast.Call):
            reason = _unsafe_call(_dotted_name(node.func, aliases), node)
            if reason:
                problems.append((path, node.lineno, reason))
    return problems


def _import_aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> the dotted name it is bound to (``np`` -> ``numpy``, ``load`` -> ...)."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                # `import a.b` binds `a`; `import a.b as c` binds `c` to `a.b`.
                local = alias.asname or alias.name.split(".")[0]
                aliases[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _dotted_name(expression: ast.expr, aliases: dict[str, str]) -> str | None:
    """The callee's dotted name resolved through imports (``torch.load``); None if dynamic."""
    if isinstance(expression, ast.Name):
        return aliases.get(expression.id, expression.id)
    if isinstance(expression, ast.Attribute):
        owner = _dotted_name(expression.value, aliases)
        return None if owner is None else f"{owner}.{expression.attr}"
    return None


def _unsafe_call(name: str | None, call: ast.Call) -> str | None:
    """Why calling `name` this way can run code, or None when it cannot."""
    keywords = {keyword.arg: keyword.value for keyword in call.keywords}
    if name in ("torch.load", "torch.serialization.load"):
        weights_only = keywords.get("weights_only")
        if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
            return f"{name} without a literal weights_only=True unpickles arbitrary objects"
    elif name == "numpy.load":
        allow_pickle = keywords.get("allow_pickle")
        if None in keywords or not (
            allow_pickle is None
            or (isinstance(allow_pickle, ast.Constant) and allow_pickle.value is False)
        ):
            return "numpy.load with allow_pickle (or **kwargs that may set it) unpickles"
    elif name is not None and name.startswith("yaml.") and name[5:] in UNSAFE_YAML:
        return f"{name} can build arbitrary objects; use yaml.safe_load"
    elif name == "pandas.read_pickle":
        return "pandas.read_pickle unpickles arbitrary objects"
    return None


def _scanned_files() -> list[Path]:
    return [
        path
        for directory in SCANNED
        for path in sorted((REPOSITORY / directory).rglob("*.py"))
        if not any(part == "build" or part.endswith(".egg-info") for part in path.parts)
    ]


def test_no_module_in_twcore_or_plugins_can_run_code_while_loading_data() -> None:
    files = _scanned_files()
    # The scan looks in the right place:
    assert REPOSITORY / "twcore" / "contract" / "data_cache.py" in files
    problems = [
        problem
        for path in files
        for problem in unsafe_deserialisation(
            path.read_text(encoding="utf-8"), str(path.relative_to(REPOSITORY))
        )
    ]
    assert not problems, "unsafe deserialisation:\n" + "\n".join(
        f"{path}:{line}: {reason}" for path, line, reason in problems
    )


FORBIDDEN_SNIPPETS = [
    *(f"import {module}" for module in sorted(FORBIDDEN_MODULES)),
    "from pickle import loads",
    "import json, dill as d",
    "import joblib.numpy_pickle",
    "torch.load(path)",
    "torch.load(path, weights_only=False)",
    "torch.load(path, weights_only=trusted)",
    "from torch import load\nload(path)",
    "import torch.serialization\ntorch.serialization.load(path)",
    "np.load(path, allow_pickle=True)",
    "import numpy\nnumpy.load(path, allow_pickle=True)",
    "np.load(path, **options)",
    *(f"yaml.{function}(text)" for function in sorted(UNSAFE_YAML)),
    "from yaml import load\nload(text, Loader=Loader)",
    "pd.read_pickle(path)",
    "import pandas\npandas.read_pickle(path)",
]
ALLOWED_SNIPPETS = [
    "torch.load(path, weights_only=True)",
    "torch.load(path, map_location='cpu', weights_only=True)",
    "torch.save(state, path)",
    "yaml.safe_load(text)",
    "np.load(path)",
    "np.load(path, allow_pickle=False)",
    "import json\njson.loads(text)",
    "import picklescan",  # a module whose name merely starts with a forbidden one
    "state_dict = checkpoint.load(path)",
    "note = 'import pickle; torch.load(path)'",
]


@pytest.mark.parametrize("snippet", FORBIDDEN_SNIPPETS)
def test_the_checker_flags_each_unsafe_loader(snippet: str) -> None:
    problems = unsafe_deserialisation(f"x = 1\n{snippet}\n", "snippet.py")
    assert len(problems) == 1
    path, line, _ = problems[0]
    assert (path, line) == ("snippet.py", 1 + snippet.count("\n") + 1)  # the offending line


@pytest.mark.parametrize("snippet", ALLOWED_SNIPPETS)
def test_the_checker_accepts_safe_loaders(snippet: str) -> None:
    assert unsafe_deserialisation(snippet, "snippet.py") == []
