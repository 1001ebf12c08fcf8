"""The ``alphavil`` method: the engine's adapter for :class:`~twcore_method_alphavil.rule.AlphaVIL`
(weighted steps every step, the rule's epoch update after each pass over the data)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.method import MethodContext, StepResult
from twcore.contract.options import option
from twcore.contract.panels import Panel
from twcore.contract.spec import Capability, Requirements
from twcore.contract.weighting_method import WeightingMethod, name_objectives, shared_parameters
from twcore_method_alphavil.rule import AlphaVIL


@dataclass
class AlphaVILConfig:
    fraction: float = option(
        0.25, gt=0, le=1, help="ρ, the share of an epoch each task-specific copy trains"
    )
    alpha_steps: int = option(10, ge=1, help="gradient steps fitting the mixing weights α")
    alpha_lr: float = option(0.1, gt=0, help="learning rate of the α fit (plain gradient descent)")
    validation_batches: int = option(
        2, ge=1, help="validation examples per α fit, in training batches (drawn as one batch)"
    )
    task_lr: float = option(
        0.2, gt=0, help="learning rate of the task-specific copies (plain SGD, so w_i scales δ_i)"
    )
    task_grad_clip: float = option(20.0, gt=0, help="clip each copy's gradient norm to this")


class AlphaVILMethod(WeightingMethod):
    """Weighted multitask steps (the rule as a :class:`~twcore.contract.weighting.Weighting`),
    with weights moved between epochs (see :mod:`twcore_method_alphavil.rule`)."""

    Config = AlphaVILConfig
    # Its steps are a held weighting, but between epochs it fits α from the dot products of
    # validation gradients with the copies' updates: scaled gradients would scale them.
    loss_scaling = False
    requirements = Requirements(
        main_auxiliary=True, capabilities=frozenset({Capability.VALIDATION})
    )
    panels = (
        Panel(
            "task weights",
            ("method/task_weight/*",),
            "line",
            "each task's weight after every epoch's adjustment",
        ),
        Panel(
            "α of the last search",
            ("method/alpha/*",),
            "line",
            "the scale of each task-specific update that lowered the main task's validation loss",
        ),
        Panel(
            "main-task validation loss before and after",
            ("method/target_val_loss_before", "method/target_val_loss_after"),
            "line",
            "what each epoch's weight search gained",
        ),
    )

    rule: AlphaVIL

    def __init__(self, config: AlphaVILConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        shared_ids = {id(p) for p in shared_parameters(ctx.model, ctx.spec, method="αVIL")}
        self.shared_names = [n for n, p in ctx.model.named_parameters() if id(p) in shared_ids]
        self.task_stream = ctx.stream("train")
        # One forward pass over all the α fit's validation examples per α step.
        self.validation_stream = ctx.stream("val", ctx.batch_size * config.validation_batches)
        self.steps_this_epoch = 0

    def build_rule(self, config: AlphaVILConfig, ctx: MethodContext) -> AlphaVIL:
        assert ctx.spec.main_index is not None  # the requirements ask for a main objective
        return AlphaVIL(
            ctx.spec.num_objectives,
            ctx.spec.main_index,
            fraction=config.fraction,
            alpha_steps=config.alpha_steps,
            alpha_lr=config.alpha_lr,
            task_lr=config.task_lr,
            task_grad_clip=config.task_grad_clip,
        )

    def train_step(self, batch: Batch) -> StepResult:
        result = super().train_step(batch)
        self.steps_this_epoch += 1
        return result

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        steps = self.rule.copy_steps(self.steps_this_epoch)
        self.steps_this_epoch = 0
        logs = self.rule.epoch_update(
            self.ctx.model,
            self.shared_names,
            batches=self.task_stream,
            task_loss=self.objective_loss,
            dev_batch=next(self.validation_stream),
            steps=steps,
        )
        return name_objectives(logs, self.ctx.spec.objective_names)

    def objective_loss(self, params: Mapping[str, Tensor], batch: Batch, index: int) -> Tensor:
        """Objective `index`'s mean loss at `params`, alone: the backward pass then reaches only
        its own head (stacking every objective's loss would send zeros through the others)."""
        outputs = self.ctx.outputs(batch, params)
        name = self.ctx.spec.objective_names[index]
        return self.ctx.task.objective_losses(outputs, batch)[name].mean()

    def state_dict(self) -> dict[str, Any]:
        return {
            **self.rule.state_dict(),
            "steps_this_epoch": self.steps_this_epoch,
            "task_stream": self.task_stream.state_dict(),
            "validation_stream": self.validation_stream.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rule.load_state_dict(state)
        self.steps_this_epoch = int(state["steps_this_epoch"])
        self.task_stream.load_state_dict(state["task_stream"])
        self.validation_stream.load_state_dict(state["validation_stream"])
