"""Checking that a method's rule in a plain PyTorch loop trains exactly as the engine does.

A method plugin's update rule is written once and used by the engine's adapter and by users'
own loops; these helpers let a test run both and compare the final parameters bit for bit::

    engine = engine_parameters(tmp_path, {"method": "gradcos", "steps": 20, "seed": 3})
    setup = plain_setup({"seed": 3})                 # task, model, optimiser, stream: no engine
    rule = GradCos(setup.spec.num_objectives, main=setup.spec.main_index)
    for batch in itertools.islice(setup.stream, 20):
        losses = setup.losses(batch)
        setup.optimizer.zero_grad(set_to_none=True)
        rule.backward(losses, setup.shared, params=setup.model.parameters())
        setup.optimizer.step()
    assert_same_parameters(setup.model, engine)

:func:`plain_setup` builds what a run starts from the way a user would: seed torch, build the
task and the model from their plugin classes, a ``torch.optim`` optimiser, the task's training
stream — nothing of the engine.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.model import Model, parameters_shared_by_objectives
from twcore.contract.optim import OptimConfig, build_optimizer
from twcore.contract.spec import TaskSpec
from twcore.contract.stream import BatchStream
from twcore.contract.task import Task, stack_objective_losses
from twcore.orchestration import api
from twcore.orchestration.config.compose import compose
from twcore.orchestration.engine.checkpoint import load_checkpoint
from twcore.orchestration.registry import PluginRegistry

QUIET = {"wandb.enabled": False, "eval_every": 0, "device": "cpu", "checkpoint_every": 0}


@dataclass
class PlainSetup:
    """What a run starts from, built without the engine."""

    task: Task
    model: Model
    optimizer: torch.optim.Optimizer
    stream: BatchStream

    @property
    def spec(self) -> TaskSpec:
        return self.task.spec

    @property
    def shared(self) -> list[torch.nn.Parameter]:
        """The parameters several objectives share."""
        return parameters_shared_by_objectives(self.model, self.spec)

    def losses(self, batch: Batch) -> Tensor:
        """The objectives' mean losses [K] on `batch`, with their graph."""
        return stack_objective_losses(self.task, self.model(batch.inputs), batch)


def plain_setup(
    options: Mapping[str, Any] | None = None, *, registry: PluginRegistry | None = None
) -> PlainSetup:
    """The task, model, optimiser (``optim.*``) and training stream of a run with `options`
    (``seed``, ``batch_size``, ``task``/``model`` and their options), built as a user would."""
    composed = compose([f"{k}={v}" for k, v in dict(options or {}).items()], registry=registry)
    run = composed.run
    random.seed(run.seed)
    np.random.seed(run.seed)
    torch.manual_seed(run.seed)
    task = composed.plugins["task"].cls(composed.sections["task"])
    model = composed.plugins["model"].cls(composed.sections["model"], task.spec)
    optimizer = build_optimizer(model.parameters(), OptimConfig(**vars(run.optim)))
    stream = task.stream(
        "train", run.batch_size, seed=run.seed, device=torch.device("cpu"), model=model
    )
    return PlainSetup(task, model, optimizer, stream)


def engine_parameters(
    run_dir: Path, options: Mapping[str, Any], *, registry: PluginRegistry | None = None
) -> dict[str, Tensor]:
    """The model's parameters after the engine trained a run with `options` (CPU, no
    evaluation, W&B off), from its final checkpoint."""
    api.run({**QUIET, **dict(options), "run_dir": str(run_dir)}, registry=registry)
    checkpoint = load_checkpoint(Path(run_dir) / "checkpoints" / "last.pt")
    parameters: dict[str, Tensor] = checkpoint["model"]
    return parameters


def assert_same_parameters(model: torch.nn.Module, expected: Mapping[str, Tensor]) -> None:
    """AssertionError naming the first parameter of `model` that differs from `expected` in
    any bit."""
    state = model.state_dict()
    assert state.keys() == expected.keys(), (sorted(state), sorted(expected))
    for name, value in state.items():
        assert torch.equal(value, expected[name]), f"{name} differs: {value} != {expected[name]}"
