"""Plugin discovery: every entry point loads on its own; failures and conflicts are reported."""

from __future__ import annotations

import json

import pytest

from twcore.contract.errors import DuplicatePluginError, UnknownPluginError
from twcore.contract.hookspecs import hookimpl
from twcore.contract.method import Method
from twcore.orchestration.registry import PluginRegistry, PluginSource


def _method_plugin(name: str, cls: type) -> object:
    """A plugin object registering one method, for the duration of a test."""

    class Plugin:
        @staticmethod
        @hookimpl
        def twcore_register_methods(register):
            register(name, cls)

    return Plugin()


def _statuses(registry: PluginRegistry) -> dict[str, tuple[str, str | None]]:
    return {s.source.name: (s.status, s.error) for s in registry.statuses}


def test_broken_plugins_are_reported_and_the_others_still_load(fixture_entry_points):
    registry = PluginRegistry(autoload=True, entry_points=fixture_entry_points("broken_plugins"))
    statuses = _statuses(registry)
    assert statuses["good-method"] == ("loaded", None)
    assert registry.get("method", "fixture-sum").source.distribution == "twcore-fixture-good-method"
    expected = {
        "broken-import": "ModuleNotFoundError: No module named "
        "'a_dependency_that_is_not_installed'",
        "unknown-hook": "unknown hook 'twcore_register_method' (did you mean "
        "'twcore_register_methods'?)",
        "bad-signature": "registry",
        "raising-hook": "twcore_register_tasks raised RuntimeError: dataset index is corrupt",
        "not-a-method": "is not a subclass of twcore.contract.method.Method",
        "exiting-hook": "twcore_register_models raised SystemExit: 3",
    }
    for name, fragment in expected.items():
        status, error = statuses[name]
        assert status == "failed"
        assert fragment in error, error
    failed = {f.source.distribution: f.source.version for f in registry.failures}
    assert failed == {f"twcore-fixture-{n}": "0.1" for n in expected}


def test_a_failed_plugin_registers_nothing(fixture_entry_points):
    registry = PluginRegistry(autoload=True, entry_points=fixture_entry_points("broken_plugins"))
    assert registry.names("method") == ["fixture-sum"]
    assert registry.names("task") == []


def test_duplicate_names_are_an_error_naming_both_distributions(fixture_entry_points):
    registry = PluginRegistry(autoload=True, entry_points=fixture_entry_points("duplicate_plugins"))
    with pytest.raises(DuplicatePluginError) as caught:
        registry.get("method", "shadow")
    message = str(caught.value)
    assert "twcore-fixture-dup-a 0.1" in message
    assert "twcore-fixture-dup-b 0.1" in message


def test_unknown_name_lists_installed_names_with_a_suggestion():
    registry = PluginRegistry(autoload=True)
    with pytest.raises(
        UnknownPluginError,
        match=r"unknown method 'eww' \(did you mean 'ew'\?\); "
        r"installed methods: (\S+, )*ew(,|$)",
    ):
        registry.get("method", "eww")


def test_autoload_can_be_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("TWCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = PluginRegistry()
    assert registry.names("method") == []
    with pytest.raises(UnknownPluginError, match="autoloading is off"):
        registry.get("method", "ew")


def test_autoload_can_be_restricted_by_entry_point_or_distribution_name(monkeypatch):
    monkeypatch.setenv("TWCORE_PLUGINS", "ew,twcore-model-mlp")
    registry = PluginRegistry()
    assert registry.names("method") == ["ew"]
    assert registry.names("model") == ["mlp"]
    assert registry.names("task") == []


def test_a_plugin_object_can_be_added_for_one_test():
    class Tiny(Method):
        def train_step(self, batch):
            raise NotImplementedError

    registry = PluginRegistry(autoload=False)
    status = registry.add_plugin(_method_plugin("tiny", Tiny), PluginSource("tiny-plugin"))
    assert status.status == "loaded"
    assert registry.get("method", "tiny").cls is Tiny


def test_bad_plugin_names_are_refused():
    status = PluginRegistry(autoload=False).add_plugin(
        _method_plugin("Has Spaces", Method), "bad-name"
    )
    assert status.status == "failed"
    assert "lowercase" in status.error


def test_cli_lists_failed_plugins_and_still_runs_the_good_ones(run_cli, fixtures_dir, tmp_path):
    folder = fixtures_dir / "broken_plugins"
    listing = run_cli("plugins", "--json", extra_path=folder)
    assert listing.returncode == 0, listing.stderr
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["broken-import"]["status"] == "failed"
    assert rows["broken-import"]["distribution"] == "twcore-fixture-broken-import"
    assert rows["broken-import"]["version"] == "0.1"
    assert rows["fixture-sum"]["status"] == "loaded"
    assert rows["ew"]["status"] == "loaded"
    assert rows["exiting-hook"]["status"] == "failed"  # its sys.exit took nothing else down
    run = run_cli(
        "run",
        "method=fixture-sum",
        "steps=5",
        "wandb.enabled=false",
        f"run_dir={tmp_path / 'run'}",
        extra_path=folder,
    )
    assert run.returncode == 0, run.stderr
    assert "plugin 'broken-import' (twcore-fixture-broken-import 0.1) failed to load" in run.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed"


def test_cli_reports_duplicate_names_with_exit_code_2(run_cli, fixtures_dir):
    result = run_cli("run", "method=ew", "steps=1", extra_path=fixtures_dir / "duplicate_plugins")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "method 'ew' is registered by more than one plugin" in result.stderr
    assert "twcore-method-ew" in result.stderr and "twcore-fixture-dup-b" in result.stderr
    listing = run_cli("plugins", extra_path=fixtures_dir / "duplicate_plugins")
    assert "duplicate" in listing.stdout


def test_the_duplicate_hint_works_as_given(run_cli, fixtures_dir, tmp_path):
    folder = fixtures_dir / "duplicate_plugins"
    failed = run_cli("run", "method=ew", "steps=1", extra_path=folder)
    hint = failed.stderr.split("skip the others with ")[1].split()[0]
    variable, value = hint.split("=")
    run = run_cli(
        "run",
        "-q",
        "method=ew",
        "steps=2",
        "wandb.enabled=false",
        f"run_dir={tmp_path / 'run'}",
        extra_path=folder,
        env={variable: value},
    )
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"


def test_a_reproduction_grid_hook_that_exits_is_skipped_with_a_warning(capsys):
    class ExitingGrids:
        @staticmethod
        @hookimpl
        def twcore_reproduction_grids(register):
            raise SystemExit("no grids today")

    registry = PluginRegistry(autoload=False)
    assert registry.add_plugin(ExitingGrids(), "exiting-grids").status == "loaded"
    assert registry.reproduction_grids() == []
    assert "its reproduction grids raised SystemExit: no grids today" in capsys.readouterr().err


def test_one_plugin_can_register_a_method_a_task_and_a_model_that_run_together(tmp_path):
    import twcore
    from twcore.testing.reference import ReferenceMethod, ReferenceModel, ReferenceTask

    class Everything:
        @staticmethod
        @hookimpl
        def twcore_register_methods(register):
            register("my-method", ReferenceMethod)

        @staticmethod
        @hookimpl
        def twcore_register_tasks(register):
            register("my-task", ReferenceTask)

        @staticmethod
        @hookimpl
        def twcore_register_models(register):
            register("my-model", ReferenceModel)

    registry = PluginRegistry(autoload=False)
    registry.add_plugin(Everything(), PluginSource("everything", "everything-dist", "2.0"))
    result = twcore.run(
        [
            "method=my-method",
            "task=my-task",
            "model=my-model",
            "steps=5",
            "wandb.enabled=false",
            f"run_dir={tmp_path / 'run'}",
        ],
        registry=registry,
    )
    assert result.summary["status"] == "completed"
    assert result.summary["plugins"] == {
        "twcore": "0.1.0",
        "my-method": "2.0",
        "my-task": "2.0",
        "my-model": "2.0",
    }


def test_a_config_field_called_name_is_refused():
    from dataclasses import dataclass

    @dataclass
    class Clashing:
        name: str = "x"

    class Named(Method):
        Config = Clashing

        def train_step(self, batch):
            raise NotImplementedError

    status = PluginRegistry(autoload=False).add_plugin(
        _method_plugin("named", Named), "named-plugin"
    )
    assert status.status == "failed"
    assert "field 'name', which is reserved" in status.error
