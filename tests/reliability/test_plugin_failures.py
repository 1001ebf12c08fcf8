"""A broken or ambiguous plugin is named, never blamed on the core, and never takes the others
down; budgets that differ between methods are said out loud."""

from __future__ import annotations

import importlib.metadata
import json

import pytest
import torch

from twcore.contract.method import Method, StepResult
from twcore.orchestration import api
from twcore.orchestration.cli.commands import compatible_methods
from twcore.orchestration.cli.main import one_line
from twcore.orchestration.engine.run_failure import RunFailure
from twcore.orchestration.registry import PluginRegistry
from twcore.orchestration.sweep import run_sweep
from twcore.testing import ReferenceMethod, ReferenceModel, ReferenceTask
from twcore.testing.harness import registry_with, resolve
from twcore.testing.reference import REFERENCE_METHOD, REFERENCE_MODEL, REFERENCE_TASK

QUIET = ["wandb.enabled=false", "eval_every=0", "checkpoint_every=0"]


class RaisesWhenBuilt(Method):
    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        raise TypeError("__init__() got an unexpected keyword argument 'lr'")

    def train_step(self, batch):
        raise AssertionError("never called")


class BrokenForward(ReferenceModel):
    def forward(self, inputs):
        outputs = super().forward(inputs)
        if self.training:
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (32x7 and 8x4)")
        return outputs


class BrokenEvaluation(ReferenceTask):
    def evaluate(self, model, split, *, device, batch_size):
        raise KeyError("acc/main")


def _run(tmp_path, *, method=REFERENCE_METHOD, task=REFERENCE_TASK, model=REFERENCE_MODEL):
    registry = registry_with(
        [
            resolve("method", method, "method-under-test"),
            resolve("task", task, "task-under-test"),
            resolve("model", model, "model-under-test"),
        ]
    )
    names = {"method": "method-under-test", "task": "task-under-test", "model": "model-under-test"}
    chosen = {
        kind: name if not isinstance(plugin, str) else plugin
        for (kind, name), plugin in zip(names.items(), (method, task, model), strict=True)
    }
    options = [f"{k}={v}" for k, v in chosen.items()]
    return api.run([*options, "steps=4", f"run_dir={tmp_path / 'run'}", *QUIET], registry=registry)


@pytest.mark.parametrize(
    ("plugins", "named", "phase", "recorded"),
    [
        ({"method": RaisesWhenBuilt}, "method 'method-under-test'", "building the method", False),
        ({"model": BrokenForward}, "model 'model-under-test'", "train_step at step 0", True),
        ({"task": BrokenEvaluation}, "task 'task-under-test'", "evaluate at step 4", True),
    ],
)
def test_an_exception_inside_a_plugin_names_the_plugin_phase_and_step(
    plugins, named, phase, recorded, tmp_path
):
    with pytest.raises(RunFailure) as raised:
        _run(tmp_path, **plugins)
    message = str(raised.value)
    assert message.startswith(f"{named} (under-test 0) raised "), message
    assert f"({phase})" in message, message
    summary_path = tmp_path / "run" / "summary.json"
    # A plugin that fails while the run is built fails before its directory exists.
    assert summary_path.exists() == recorded
    if recorded:
        summary = json.loads(summary_path.read_text())
        assert summary["status"] == "failed" and summary["error"] == message
        assert summary["failure"]["plugin"]["name"] == named.split("'")[1]


class FailsToRestore(ReferenceMethod):
    def load_state_dict(self, state):
        raise KeyError("weights")


def test_a_plugin_failing_to_restore_its_state_is_named_and_recorded(tmp_path):
    registry = registry_with([resolve("method", FailsToRestore, "fails-to-restore")])
    options = [
        "method=fails-to-restore",
        f"task={REFERENCE_TASK}",
        f"model={REFERENCE_MODEL}",
        f"run_dir={tmp_path / 'run'}",
        *QUIET,
    ]
    api.run([*options, "steps=2"], registry=registry)
    with pytest.raises(RunFailure) as raised:
        api.resume(tmp_path / "run", ["steps=4"], registry=registry)
    message = str(raised.value)
    assert message.startswith("method 'fails-to-restore' (under-test 0) raised KeyError"), message
    assert "(restoring the checkpoint at step 2)" in message
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == message


def test_an_installed_plugins_failure_names_its_distribution_and_version(
    run_cli, fixtures_dir, tmp_path
):
    result = run_cli(
        "run",
        "-q",
        "method=fixture-fails",
        "steps=5",
        f"run_dir={tmp_path / 'run'}",
        *QUIET,
        extra_path=fixtures_dir / "failing_plugins",
    )
    assert result.returncode == 1, result.stderr
    expected = (
        "method 'fixture-fails' (twcore-fixture-failing-method 0.3) raised TypeError: "
        "unsupported operand type(s) for +: 'Tensor' and 'str' (train_step at step 2)"
    )
    assert result.stderr == f"twcore: error: {expected}\n"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["error"] == expected
    assert summary["failure"] == {
        "plugin": {
            "kind": "method",
            "name": "fixture-fails",
            "distribution": "twcore-fixture-failing-method",
            "version": "0.3",
        },
        "phase": "train_step",
        "step": 2,
    }


def test_several_lines_of_library_text_become_one_line_with_the_rest_behind_debug():
    text = "Weights only load failed.\n\t(1) do this\n\t(2) or that\n"
    assert one_line(text, debug=False) == "Weights only load failed. (more with --debug)"
    assert one_line(text, debug=True) == "Weights only load failed. (1) do this (2) or that"
    assert one_line("just one", debug=False) == "just one"


def _installed_and(fixture_entry_points, folder: str) -> PluginRegistry:
    installed = list(importlib.metadata.entry_points(group="twcore"))
    return PluginRegistry(autoload=True, entry_points=[*installed, *fixture_entry_points(folder)])


def test_compare_skips_an_ambiguous_method_and_says_how_to_resolve_it(fixture_entry_points, capsys):
    registry = _installed_and(fixture_entry_points, "duplicate_plugins")
    methods = compatible_methods(registry, [], None, command="compare")
    assert "ew" not in methods and "gradcos" in methods
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "'ew'" in line)
    assert line.startswith("compare: skipping method 'ew': method 'ew' is registered by more")
    assert "TWCORE_EXCLUDE_PLUGINS=" in line


def test_bench_names_itself_when_it_skips_a_method(capsys):
    from twcore.orchestration.registry import get_registry

    methods = compatible_methods(get_registry(), [], None, command="bench")
    assert "dfl" not in methods
    err = capsys.readouterr().err
    assert (
        "bench: skipping method 'dfl': method 'dfl' cannot run on task 'toy-multitask': it needs"
        in err
    )
    assert "compare:" not in err


class ThreeUpdatesAStep(Method):
    """An outer-loop method in miniature: three optimiser steps per engine step."""

    def train_step(self, batch):
        for _ in range(3):
            losses = self.ctx.objective_losses(batch)
            self.ctx.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            self.ctx.optimizer_step()
        return StepResult(losses=losses.detach())


def test_a_table_of_methods_with_different_budgets_says_so(tmp_path):
    registry = registry_with([resolve("method", ThreeUpdatesAStep, "three-updates")])
    torch.manual_seed(0)
    result = run_sweep(
        [
            f"method={REFERENCE_METHOD},three-updates",
            f"task={REFERENCE_TASK}",
            f"model={REFERENCE_MODEL}",
            "steps=4",
            f"run_dir={tmp_path}",
            *QUIET,
        ],
        registry=registry,
    )
    updates = {t.swept["method"]: t.summary["model_updates"] for t in result.trials}
    assert updates == {REFERENCE_METHOD: 4, "three-updates": 12}
    (table,) = result.tables
    markdown = table.to_markdown()
    assert "Budgets differ" in markdown and "three-updates: 12" in markdown
    assert table.best_rows()["model_updates"] is None  # a budget is never marked "best"
    assert table.best_rows()["steps_per_s"] is None


def test_a_resumed_run_keeps_counting_its_model_updates(tmp_path):
    api.run(["steps=3", f"run_dir={tmp_path / 'half'}", "checkpoint_every=3", *QUIET])
    resumed = api.resume(tmp_path / "half", ["steps=6"])
    assert resumed.summary["model_updates"] == 6
