"""Conformance suites a plugin author runs in their own tests.

Subclass one suite in a pytest module and say what to test; every ``test_*`` method runs::

    from twcore.testing import MethodConformance

    class TestMyMethod(MethodConformance):
        method = "my-method"                 # an installed name, or the class itself
        method_options = {"step_size": 0.1}  # optional method.* settings

By default a method is paired with the reference task and model of :mod:`twcore.testing.reference`
(three objectives with main/auxiliary roles and a validation split); set ``task``/``model`` (and
``task_options``/``model_options``) to pair it with others, e.g. a task that has the capability
your method needs. Task and model suites pair the plugin with the reference method.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import yaml

from twcore.contract.batch import Batch
from twcore.contract.method import StepResult
from twcore.contract.metrics import check_directions
from twcore.contract.task import TensorTask
from twcore.orchestration import api
from twcore.orchestration.config.compose import compose
from twcore.orchestration.engine.checkpoint import load_checkpoint
from twcore.orchestration.engine.components import build_task
from twcore.orchestration.engine.trainer import RunResult
from twcore.orchestration.registry import PluginRegistry
from twcore.orchestration.tracking.values import flatten_values
from twcore.testing.harness import Harness, PluginEntry, as_overrides, registry_with, resolve
from twcore.testing.reference import REFERENCE_METHOD, REFERENCE_MODEL, REFERENCE_TASK

QUIET_RUN = {"wandb.enabled": False, "eval_every": 0, "device": "cpu"}


class _Plumbing:
    """Which plugins, which options, and how to run them (every suite's plumbing)."""

    method: ClassVar[str | type] = REFERENCE_METHOD
    task: ClassVar[str | type] = REFERENCE_TASK
    model: ClassVar[str | type] = REFERENCE_MODEL
    method_options: ClassVar[dict[str, Any]] = {}
    task_options: ClassVar[dict[str, Any]] = {}
    model_options: ClassVar[dict[str, Any]] = {}
    run_options: ClassVar[dict[str, Any]] = {}
    steps: ClassVar[int] = 6
    """Training steps of the short runs (raise it for methods that act per epoch)."""

    def entries(self) -> list[PluginEntry]:
        return [
            resolve("method", self.method, "method-under-test"),
            resolve("task", self.task, "task-under-test"),
            resolve("model", self.model, "model-under-test"),
        ]

    def registry(self) -> PluginRegistry:
        return registry_with(self.entries())

    def options(self, **extra: Any) -> dict[str, Any]:
        names = {e.kind: e.name for e in self.entries()}
        options: dict[str, Any] = {
            "method": names["method"],
            "task": names["task"],
            "model": names["model"],
            "batch_size": 32,
            **QUIET_RUN,
        }
        for section, values in (
            ("method", self.method_options),
            ("task", self.task_options),
            ("model", self.model_options),
        ):
            options.update({f"{section}.{k}": v for k, v in values.items()})
        options.update(self.run_options)
        options.update(extra)
        return options

    def harness(self, **extra: Any) -> Harness:
        return Harness(self.registry(), self.options(**extra))

    def engine_run(self, run_dir: Path, **extra: Any) -> RunResult:
        options = self.options(**{"steps": self.steps, "run_dir": str(run_dir), **extra})
        return api.run(options, registry=self.registry())


class _Suite(_Plumbing):
    """The plumbing and the tests shared by the method, task and model suites."""

    # -- tests shared by every suite -------------------------------------------------------

    def test_config_round_trips_through_yaml(self) -> None:
        registry = self.registry()
        composed = compose(as_overrides(self.options()), registry=registry)
        again = compose((), base=yaml.safe_load(composed.to_yaml()), registry=registry)
        assert again.to_dict() == composed.to_dict()
        for section, value in composed.sections.items():
            assert dataclasses.asdict(again.sections[section]) == dataclasses.asdict(value)

    def test_runs_through_the_engine_and_writes_a_complete_summary(self, tmp_path: Path) -> None:
        result = self.engine_run(tmp_path / "run")
        summary = result.summary
        assert summary["status"] == "completed"
        assert summary["steps"] == self.steps
        # A task built anew (its data comes from the cache) only to read what it declares.
        task = build_task(compose(as_overrides(self.options()), registry=self.registry()))
        directions = task.metric_directions
        assert directions is not None, (
            "the task does not declare metric_directions: declare every metric it reports and "
            "whether higher (max), lower (min) or neither (none) is better"
        )
        check_directions(directions, "metric_directions")
        primary = task.spec.primary_metric
        assert directions.get(primary) == task.spec.primary_mode, (
            f"the primary metric '{primary}' has primary_mode '{task.spec.primary_mode}' and "
            f"direction {directions.get(primary)!r} in metric_directions; make them agree"
        )
        declared = set(directions)
        for split, metrics in summary["metrics"].items():
            assert metrics, f"no {split} metrics"
            for name, value in metrics.items():
                assert value is not None and math.isfinite(value), f"{split}/{name} is {value}"
            assert set(metrics) == declared, (
                f"the task's metric_directions do not match what its evaluate returned on {split}: "
                f"undeclared {sorted(set(metrics) - declared)}, "
                f"never returned {sorted(declared - set(metrics))}"
            )
        assert (tmp_path / "run" / "config.yaml").exists()

    def test_resume_from_checkpoint_matches_an_uninterrupted_run(self, tmp_path: Path) -> None:
        whole = self.engine_run(tmp_path / "whole")
        half = max(1, self.steps // 2)
        self.engine_run(tmp_path / "split", steps=half)
        checkpoint = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
        assert checkpoint["step"] == half
        resumed = api.resume(tmp_path / "split", [f"steps={self.steps}"], registry=self.registry())
        assert resumed.metrics == whole.metrics

    def test_same_seed_gives_identical_training(self) -> None:
        # One after the other: building a harness seeds the global RNGs (dropout uses them).
        first = self.harness(seed=3)
        first.steps(3)
        expected = first.parameters()
        second = self.harness(seed=3)
        second.steps(3)
        for name, value in expected.items():
            torch.testing.assert_close(second.parameters()[name], value, rtol=0, atol=0)


class MethodConformance(_Suite):
    """Checks a method plugin: finite per-objective losses, loggable values, determinism,
    exact resume from a checkpoint (its state_dict must hold everything it learns)."""

    def test_steps_report_finite_losses_for_every_objective(self) -> None:
        harness = self.harness()
        spec = harness.components.task.spec
        for result in harness.steps(self.steps):
            assert isinstance(result, StepResult)
            assert result.losses.shape == (spec.num_objectives,)
            assert torch.isfinite(result.losses).all()
            if result.weights is not None:
                assert result.weights.shape == (spec.num_objectives,)
                assert torch.isfinite(result.weights).all()

    def test_logged_values_are_numbers_or_media(self) -> None:
        harness = self.harness()
        for result in harness.steps(self.steps):
            flatten_values(result.logs)
        flatten_values(harness.components.method.on_epoch_end(1))

    def test_training_changes_the_model(self) -> None:
        harness = self.harness()
        before = harness.parameters()
        harness.steps(self.steps)
        after = harness.parameters()
        assert any(not torch.equal(before[k], after[k]) for k in before)

    def test_state_dict_survives_a_weights_only_checkpoint(self, tmp_path: Path) -> None:
        harness = self.harness()
        harness.steps(2)
        path = tmp_path / "method.pt"
        torch.save(harness.components.method.state_dict(), path)
        state = torch.load(path, weights_only=True)
        self.harness().components.method.load_state_dict(state)


class TaskConformance(_Suite):
    """Checks a task plugin: spec, batches, per-example losses, stream resume, evaluation."""

    task: ClassVar[str | type]

    def _task_and_batch(self) -> tuple[Harness, Batch]:
        harness = self.harness()
        return harness, next(harness.stream)

    def test_batches_match_the_spec(self) -> None:
        harness, batch = self._task_and_batch()
        spec = harness.components.task.spec
        # Per-item tasks have inputs [B, n_items, *input_shape]: compare the trailing dims.
        assert tuple(batch.inputs.shape[-len(spec.input_shape) :]) == tuple(spec.input_shape)
        for objective in spec.objectives:
            assert objective.target in batch.targets or objective.kind == "custom", (
                f"batch has no target '{objective.target}' for objective '{objective.name}'"
            )

    def test_per_example_losses_are_finite_and_differentiable(self) -> None:
        harness, batch = self._task_and_batch()
        model, task = harness.components.model, harness.components.task
        outputs = model(batch.inputs)
        losses = task.objective_losses(outputs, batch)
        assert set(losses) == set(task.spec.objective_names)
        for name, loss in losses.items():
            assert loss.shape == (len(batch),), f"loss of '{name}' has shape {tuple(loss.shape)}"
            assert torch.isfinite(loss).all(), f"loss of '{name}' is not finite"
        total = torch.stack([loss.mean() for loss in losses.values()]).sum()
        grads = torch.autograd.grad(total, list(model.parameters()), allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads)

    def test_same_config_gives_the_same_data(self) -> None:
        first = next(self.harness().stream)
        second = next(self.harness().stream)
        torch.testing.assert_close(first.inputs, second.inputs, rtol=0, atol=0)
        for key, value in first.targets.items():
            torch.testing.assert_close(second.targets[key], value, rtol=0, atol=0)

    def test_stream_resumes_where_it_stopped(self) -> None:
        harness = self.harness()
        for _ in range(3):
            next(harness.stream)
        state = harness.stream.state_dict()
        expected = [next(harness.stream) for _ in range(2)]
        other = self.harness().stream
        other.load_state_dict(state)
        for batch in expected:
            torch.testing.assert_close(next(other).inputs, batch.inputs, rtol=0, atol=0)

    def test_evaluation_reports_the_summary_metrics(self) -> None:
        harness = self.harness()
        task, model = harness.components.task, harness.components.model
        for split in task.eval_splits:
            metrics = task.evaluate(model, split, device=harness.components.device, batch_size=64)
            for name in task.spec.summary_metrics:
                assert name in metrics, f"{split} metrics lack summary metric '{name}'"
            assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())

    def test_splits_share_no_examples(self) -> None:
        task = self.harness().components.task
        if not isinstance(task, TensorTask):
            pytest.skip("not an in-memory task")
        rows = {
            name: {tuple(x.reshape(-1).tolist()) for x in split.inputs}
            for name, split in task.splits.items()
        }
        names = sorted(rows)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                assert not rows[a] & rows[b], f"splits '{a}' and '{b}' share examples"


class ModelConformance(_Suite):
    """Checks a model plugin: outputs per head, parameter ownership, functional calls, state."""

    model: ClassVar[str | type]

    def test_outputs_have_one_entry_per_head_with_its_size(self) -> None:
        harness = self.harness()
        batch = next(harness.stream)
        outputs = harness.components.model(batch.inputs)
        spec = harness.components.task.spec
        assert set(outputs) == {h.name for h in spec.heads}
        for head in spec.heads:
            assert outputs[head.name].shape == (len(batch), head.size)
            assert torch.isfinite(outputs[head.name]).all()

    def test_leading_batch_dims_are_kept(self) -> None:
        """Inputs [*lead, *input_shape] give outputs [*lead, size] (per-item models)."""
        harness = self.harness()
        model = harness.components.model.eval()
        inputs = next(harness.stream).inputs[:4]
        flat = model(inputs)
        nested = model(inputs.reshape(2, 2, *inputs.shape[1:]))
        for name, value in flat.items():
            assert nested[name].shape == (2, 2, *value.shape[1:])
            torch.testing.assert_close(nested[name].reshape(value.shape), value)

    def test_every_parameter_is_shared_or_owned_by_one_head(self) -> None:
        model = self.harness().components.model
        owners: dict[str, list[str]] = {name: [] for name, _ in model.named_parameters()}
        for name, _ in model.named_shared_parameters():
            owners[name].append("shared")
        for head in model.spec.heads:
            for name, _ in model.named_head_parameters(head.name):
                owners[name].append(head.name)
        wrong = {name: found for name, found in owners.items() if len(found) != 1}
        assert not wrong, f"parameters without exactly one owner: {wrong}"

    def test_functional_call_matches_forward(self) -> None:
        harness = self.harness()
        model = harness.components.model.eval()
        batch = next(harness.stream)
        params: dict[str, torch.Tensor] = dict(model.named_parameters())
        direct = model(batch.inputs)
        functional = torch.func.functional_call(model, params, (batch.inputs,))
        for name, value in direct.items():
            torch.testing.assert_close(functional[name], value)

    def test_gradient_reaches_every_parameter(self) -> None:
        harness = self.harness()
        model = harness.components.model
        outputs = model(next(harness.stream).inputs)
        total = sum(output.square().mean() for output in outputs.values())
        names = [n for n, _ in model.named_parameters()]
        grads = torch.autograd.grad(total, list(model.parameters()), allow_unused=True)
        missing = [n for n, g in zip(names, grads, strict=True) if g is None]
        assert not missing, f"no gradient reaches {missing}"

    def test_state_dict_round_trip_preserves_outputs(self, tmp_path: Path) -> None:
        source = self.harness(seed=1)
        target = self.harness(seed=2)
        model = source.components.model.eval()
        path = tmp_path / "model.pt"
        torch.save(model.state_dict(), path)
        target.components.model.load_state_dict(torch.load(path, weights_only=True))
        batch = next(source.stream)
        for name, value in model(batch.inputs).items():
            torch.testing.assert_close(target.components.model.eval()(batch.inputs)[name], value)
