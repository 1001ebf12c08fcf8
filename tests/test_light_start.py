"""Commands that do not train start without the heavy libraries; plugins register lazily.

``twcore plugins``, ``show``, ``--help`` and ``--version`` read registrations, not classes: a
built-in plugin names its classes by import path and its package imports its re-exports on first
use (:mod:`twcore.contract.lazy`), so none of them imports torch. The classes still resolve to
the same objects as a direct import, and a broken import path is a clear error when used.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from twcore.contract.errors import BrokenPluginError
from twcore.contract.hookspecs import hookimpl
from twcore.contract.lazy import lazy_exports
from twcore.orchestration.cli.listing import plugin_rows
from twcore.orchestration.registry import PluginRegistry, get_registry

HEAVY = ("torch", "wandb", "matplotlib", "numpy", "gymnasium", "cvxpy", "scipy", "sklearn")
PROBE = """
import contextlib, io, json, sys
from twcore.orchestration.cli.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main({arguments!r})
print(json.dumps({{"code": code, "heavy": [m for m in {heavy!r} if m in sys.modules],
                   "out": out.getvalue()}}))
"""


def _probe(*arguments: str) -> dict:
    """Run ``twcore ARGUMENTS`` in a fresh interpreter: exit code, heavy modules, output."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(arguments=list(arguments), heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "arguments",
    [("plugins", "--json"), ("plugins",), ("show",), ("--help",), ("--version",)],
    ids=" ".join,
)
def test_commands_that_do_not_train_import_no_heavy_library(arguments):
    probed = _probe(*arguments)
    assert probed["code"] == 0
    assert probed["heavy"] == []


def test_every_command_names_a_handler_that_exists():
    """The commands are imported when they run: each subcommand's handler must resolve."""
    from twcore.orchestration.cli.main import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert {"run", "plugins", "show", "report", "compare"} <= set(commands)
    for name, subparser in commands.items():
        module, function = subparser.get_default("handler").target
        assert callable(getattr(importlib.import_module(module), function)), name


def test_the_plugin_list_names_every_class_without_importing_it():
    rows = json.loads(_probe("plugins", "--json")["out"])
    by_name = {(row["kind"], row["name"]): row for row in rows}
    registry = get_registry()
    for registration in registry.registrations():
        row = by_name[(registration.kind, registration.name)]
        assert row["status"] == "loaded"
        module, _, qualname = row["class"].partition(":")
        assert getattr(importlib.import_module(module), qualname) is registration.cls


def test_plugins_check_imports_every_class(run_cli):
    done = run_cli("plugins", "--check", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert rows and {row["status"] for row in rows} == {"loaded"}


def test_a_report_without_plots_or_wandb_imports_neither(run_cli, tmp_path):
    sweep = tmp_path / "sweep"
    done = run_cli(
        "sweep", "seed=0,1", "steps=5", "eval_every=0", "wandb.enabled=false",
        f"run_dir={sweep}", "-q",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    probed = _probe("report", str(sweep), "--no-plots", "--no-wandb", "--out", str(tmp_path / "r"))
    assert probed["code"] == 0
    assert "matplotlib" not in probed["heavy"] and "wandb" not in probed["heavy"]
    assert "0 figure(s)" in probed["out"]
    assert "| ew " in (tmp_path / "r" / "report.md").read_text()


def test_every_export_of_every_builtin_package_resolves_and_is_listed():
    """Importing the packages imports no torch; every name of ``__all__`` (the ``if
    TYPE_CHECKING:`` imports the lazy lookup reads) then resolves and is in ``dir``."""
    packages = sorted(
        {
            registration.class_path.split(".")[0]
            for registration in get_registry().registrations()
            if registration.source.distribution
        }
    )
    code = (
        "import importlib, sys\n"
        f"packages = [importlib.import_module(p) for p in {packages!r}]\n"
        "assert 'torch' not in sys.modules, 'importing the packages imported torch'\n"
        "for p in packages:\n"
        "    names = sorted(p.__all__)\n"
        "    assert names, p\n"
        "    missing = [n for n in names if getattr(p, n, None) is None]\n"
        "    assert not missing, (p, missing)\n"
        "    assert set(names) <= set(dir(p)), p\n"
        "print(len(packages))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(packages) >= 10


def _write_package(root: Path) -> None:
    package = root / "lazy_fixture"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text(
        textwrap.dedent(
            '''
            """A package whose exports load on first use."""
            from typing import TYPE_CHECKING

            from twcore.contract.lazy import lazy_exports

            if TYPE_CHECKING:
                from lazy_fixture.heavy import Heavy
                from .sub.deeper import deeper_value as renamed
                from . import sub

            __all__ = ["Heavy", "renamed", "sub"]
            __getattr__, __dir__ = lazy_exports(__name__, __file__)
            '''
        )
    )
    (package / "heavy.py").write_text("LOADED = True\n\nclass Heavy:\n    pass\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "deeper.py").write_text("deeper_value = 42\n")


def test_lazy_exports_import_each_name_on_first_use(tmp_path, monkeypatch):
    _write_package(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("lazy_fixture")]:
        monkeypatch.delitem(sys.modules, name)
    package = importlib.import_module("lazy_fixture")
    assert "lazy_fixture.heavy" not in sys.modules
    assert {"Heavy", "renamed", "sub"} <= set(dir(package))
    from lazy_fixture.heavy import Heavy  # the same object as a direct import

    assert package.Heavy is Heavy
    assert package.renamed == 42  # a relative import, renamed
    assert package.sub is sys.modules["lazy_fixture.sub"]
    assert vars(package)["Heavy"] is Heavy  # cached: the next lookup is a plain attribute
    with pytest.raises(AttributeError, match="'lazy_fixture' has no attribute 'Missing'"):
        package.Missing  # noqa: B018
    for name in [m for m in sys.modules if m.startswith("lazy_fixture")]:
        monkeypatch.delitem(sys.modules, name)


def test_lazy_exports_of_a_file_without_a_type_checking_block_are_empty(tmp_path):
    module = tmp_path / "plain.py"
    module.write_text("import os\n")
    getattr_, _ = lazy_exports("plain", str(module))
    with pytest.raises(AttributeError):
        getattr_("os")


def _lazy_plugin(name: str, path: str) -> object:
    class Plugin:
        @staticmethod
        @hookimpl
        def twcore_register_methods(register):
            register(name, path)

    return Plugin()


@pytest.fixture
def lazy_method_module(tmp_path, monkeypatch):
    """A module defining a method class and a non-method, importable, not yet imported."""
    (tmp_path / "lazy_method_fixture.py").write_text(
        "from twcore.contract import Method, NoConfig\n\n"
        "class LazyMethod(Method):\n    Config = NoConfig\n\n"
        "class NotAMethod:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lazy_method_fixture", raising=False)
    yield "lazy_method_fixture"
    sys.modules.pop("lazy_method_fixture", None)


def test_a_class_registered_by_path_is_imported_when_first_used(lazy_method_module):
    registry = PluginRegistry(autoload=False)
    status = registry.add_plugin(_lazy_plugin("lazy", f"{lazy_method_module}:LazyMethod"), "lazy")
    assert status.status == "loaded"
    assert lazy_method_module not in sys.modules
    assert plugin_rows(registry)[0]["class"] == f"{lazy_method_module}:LazyMethod"
    assert lazy_method_module not in sys.modules
    cls = registry.get("method", "lazy").cls
    assert cls is sys.modules[lazy_method_module].LazyMethod


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("lazy_method_fixture:Missing", "does not import: AttributeError"),
        ("lazy_method_fixture:NotAMethod", "is not a subclass of twcore.contract.method.Method"),
    ],
)
def test_a_broken_import_path_is_a_clear_error_when_used(lazy_method_module, path, fragment):
    registry = PluginRegistry(autoload=False)
    registry.add_plugin(_lazy_plugin("lazy", path), "lazy-plugin")
    with pytest.raises(BrokenPluginError, match="method 'lazy' of plugin 'lazy-plugin'") as error:
        registry.get("method", "lazy")
    assert fragment in str(error.value)
    assert BrokenPluginError.exit_code == 2
    [row] = plugin_rows(registry, check=True)
    assert row["status"] == "failed" and fragment in row["error"]


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("not a path", "is not an import path: write 'package.module:Class'"),
        ("no_such_package_anywhere.method:Cls", "cannot be found: ModuleNotFoundError"),
        ("no_such_module_anywhere:Cls", "there is no module 'no_such_module_anywhere'"),
    ],
)
def test_a_malformed_or_missing_import_path_fails_the_plugin_at_load(path, fragment):
    registry = PluginRegistry(autoload=False)
    status = registry.add_plugin(_lazy_plugin("lazy", path), "bad-path")
    assert status.status == "failed"
    assert fragment in status.error
    assert registry.names("method") == []


def test_compare_skips_a_method_whose_class_does_not_import(lazy_method_module, capsys):
    from twcore.orchestration.cli.commands import compatible_methods
    from twcore.orchestration.config.overrides import parse_override
    from twcore.orchestration.registry import use_registry

    registry = PluginRegistry(autoload=True)
    registry.add_plugin(_lazy_plugin("broken-one", f"{lazy_method_module}:Missing"), "broken")
    with use_registry(registry):
        methods = compatible_methods(
            registry, [parse_override("task=toy-multitask")], None, command="compare"
        )
    assert "ew" in methods and "broken-one" not in methods
    assert "skipping method 'broken-one'" in capsys.readouterr().err


def test_submodules_stay_attributes_of_a_lazy_package():
    code = "import twcore.contract as c, sys; print(c.errors.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "twcore.contract.errors"


def test_plugins_check_exits_1_when_a_class_does_not_import(lazy_method_module, capsys):
    import argparse

    from twcore.orchestration.cli.listing import plugins
    from twcore.orchestration.registry import use_registry

    registry = PluginRegistry(autoload=False)
    registry.add_plugin(_lazy_plugin("broken-one", f"{lazy_method_module}:Missing"), "broken")
    with use_registry(registry):
        assert plugins(argparse.Namespace(json=True, check=False)) == 0
        capsys.readouterr()
        assert plugins(argparse.Namespace(json=True, check=True)) == 1
    [row] = json.loads(capsys.readouterr().out)
    assert row["status"] == "failed" and "does not import" in row["error"]
