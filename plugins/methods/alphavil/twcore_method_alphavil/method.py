"""αVIL: adjust task weights between epochs from task-specific parameter updates.

Between epochs, ordinary weighted multitask steps θ ← θ − α ∇θ Σ_i w_i L_i (weights start at 1).
After each epoch (paper, Alg. 1):

1. for every task i, a copy of the current parameters θ is trained on a ρ-fraction of an epoch
   of training batches with the loss w_i·L_i alone (plain SGD; the K copies share one [K, P]
   matrix and the same batches), and the change of the *shared* parameters
   δ_i = θ_i − θ is kept (the copies are dropped at once: memory holds K deltas);
2. mixing weights α (starting at 1) are fitted by gradient descent on the target task's
   validation loss at θ + Σ_i α_i δ_i; ∂/∂α_i is the dot product of that loss's gradient on the
   shared parameters with δ_i (one functional forward/backward pass per α step);
3. θ ← θ + Σ_i α_i δ_i on the shared parameters, and w_i ← max(0, w_i + α_i − 1).

There is no public code; the choices this implementation makes are listed in the README.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from twcore.autodiff import flatten_tensors, unflatten_like
from twcore.batch import Batch
from twcore.config import option
from twcore.method import Method, MethodContext, StepResult
from twcore.model import parameters_shared_by_objectives
from twcore.spec import Capability, Requirements


@dataclass
class AlphaVILConfig:
    fraction: float = option(0.25, help="ρ, the share of an epoch each task-specific copy trains")
    alpha_steps: int = option(10, help="gradient steps fitting the mixing weights α")
    alpha_lr: float = option(0.1, help="learning rate of the α fit (plain gradient descent)")
    validation_batches: int = option(
        2, help="validation examples per α fit, in training batches (drawn as one batch)"
    )
    task_lr: float = option(
        0.2, help="learning rate of the task-specific copies (plain SGD, so w_i scales δ_i)"
    )
    task_grad_clip: float = option(20.0, help="clip each copy's gradient norm to this")

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise ValueError(f"method.fraction={self.fraction} must be in (0, 1]")
        for key in ("alpha_steps", "validation_batches"):
            if getattr(self, key) < 1:
                raise ValueError(f"method.{key}={getattr(self, key)} must be >= 1")
        for key in ("alpha_lr", "task_lr", "task_grad_clip"):
            if not getattr(self, key) > 0:
                raise ValueError(f"method.{key}={getattr(self, key)} must be > 0")


class AlphaVIL(Method):
    """Weighted multitask steps, with weights moved between epochs (module docstring)."""

    Config = AlphaVILConfig
    requirements = Requirements(
        main_auxiliary=True, capabilities=frozenset({Capability.VALIDATION})
    )

    def __init__(self, config: AlphaVILConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.weights = torch.ones(ctx.spec.num_objectives, device=ctx.device)
        shared = parameters_shared_by_objectives(ctx.model, ctx.spec)
        if not shared:
            raise ValueError("αVIL needs parameters shared by the main and auxiliary objectives")
        shared_ids = {id(p) for p in shared}
        self.shared_names = [n for n, p in ctx.model.named_parameters() if id(p) in shared_ids]
        self.task_stream = ctx.stream("train")
        # One forward pass over all the α fit's validation examples per α step.
        self.validation_stream = ctx.stream("val", ctx.batch_size * config.validation_batches)
        self.steps_this_epoch = 0
        self.main_index = ctx.spec.main_index

    def train_step(self, batch: Batch) -> StepResult:
        losses = self.ctx.objective_losses(batch)
        self.ctx.optimizer.zero_grad(set_to_none=True)
        (self.weights * losses).sum().backward()
        self.ctx.optimizer_step()
        self.steps_this_epoch += 1
        return StepResult(losses=losses.detach(), weights=self.weights.clone())

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        ctx = self.ctx
        steps = max(1, math.ceil(self.config.fraction * self.steps_this_epoch))
        self.steps_this_epoch = 0
        base = {n: p.detach() for n, p in ctx.model.named_parameters()}
        deltas = self._task_deltas(base, steps)
        alpha, before, after = self._fit_alpha(base, deltas, next(self.validation_stream))
        if not (torch.isfinite(alpha).all() and torch.isfinite(deltas).all()):
            # A copy or the α fit diverged: leave θ and the weights as they are this epoch.
            alpha, deltas, after = torch.ones_like(alpha), torch.zeros_like(deltas), before
        shared = [dict(ctx.model.named_parameters())[n] for n in self.shared_names]
        with torch.no_grad():
            for parameter, change in zip(
                shared, unflatten_like(alpha @ deltas, shared), strict=True
            ):
                parameter.add_(change)
            self.weights = (self.weights + alpha - 1).clamp_min(0)
        names = ctx.spec.objective_names
        return {
            "alpha": dict(zip(names, alpha.tolist(), strict=True)),
            "task_weight": dict(zip(names, self.weights.tolist(), strict=True)),
            "target_val_loss_before": before,
            "target_val_loss_after": after,
            "task_steps": steps,
        }

    def _task_deltas(self, base: dict[str, Tensor], steps: int) -> Tensor:
        """δ_i [K, P_shared] for every task i after `steps` SGD steps of w_i·L_i from θ.

        All K copies live in one [K, P] matrix and see the same batch at each step. Each copy's
        gradient is one functional forward/backward pass: on CPU this was faster than one
        ``vmap(grad(...))`` over the K copies (README), so the copies are visited in turn; the
        step is one tensor update of the whole matrix.
        """
        names = list(base)
        like = [base[n] for n in names]
        copies = flatten_tensors(like).unsqueeze(0).repeat(len(self.weights), 1)
        # Each copy's gradient is written straight into its row; parameters a task's loss does
        # not reach (the other tasks' heads) keep their zeros.
        gradients = torch.zeros_like(copies)
        rows = [unflatten_like(row, like) for row in gradients]
        for _ in range(steps):
            batch = next(self.task_stream)
            for task, copy in enumerate(copies):
                self._copy_gradient(names, unflatten_like(copy, like), batch, task, rows[task])
            norms = torch.linalg.vector_norm(gradients, dim=1)
            scale = (self.config.task_grad_clip / norms.clamp_min(1e-12)).clamp(max=1.0)
            copies = copies - (self.config.task_lr * scale).unsqueeze(1) * gradients
        final = dict(zip(names, unflatten_like(copies, like), strict=True))
        changes = [(final[n] - base[n]).flatten(1) for n in self.shared_names]
        return torch.cat(changes, dim=1).detach()

    def _copy_gradient(
        self, names: list[str], values: list[Tensor], batch: Batch, task: int, row: list[Tensor]
    ) -> None:
        """∇ of w_task·L_task at one copy's parameters, written into `row` (views of the
        copy's gradient row, one per parameter)."""
        leaves = [v.detach().requires_grad_() for v in values]
        loss = self.weights[task] * self._objective_loss(
            batch, dict(zip(names, leaves, strict=True)), task
        )
        gradients = torch.autograd.grad(loss, leaves, allow_unused=True)
        used = [i for i, gradient in enumerate(gradients) if gradient is not None]
        torch._foreach_copy_([row[i] for i in used], [gradients[i] for i in used])

    def _objective_loss(self, batch: Batch, params: dict[str, Tensor], task: int) -> Tensor:
        """Objective `task`'s mean loss at `params`, alone: the backward pass then reaches
        only its own head (stacking every objective's loss would send zeros through the
        others)."""
        outputs = self.ctx.outputs(batch, params)
        name = self.ctx.spec.objective_names[task]
        return self.ctx.task.objective_losses(outputs, batch)[name].mean()

    def _fit_alpha(
        self, base: dict[str, Tensor], deltas: Tensor, validation: Batch
    ) -> tuple[Tensor, float, float]:
        """α minimising the target task's validation loss at θ + Σ α_i δ_i; (α, loss at θ,
        loss at θ + Σ α_i δ_i).

        ∂/∂α_i is the dot product of the loss's gradient on the moved shared parameters with δ_i:
        one backward pass to those parameters and one [K, P] × [P] product per α step.
        """
        shared = [base[n] for n in self.shared_names]
        flat = flatten_tensors(shared)

        def target_loss(alpha: Tensor) -> tuple[Tensor, list[Tensor]]:
            moved = [v.requires_grad_() for v in unflatten_like(flat + alpha @ deltas, shared)]
            params = {**base, **dict(zip(self.shared_names, moved, strict=True))}
            return self._objective_loss(validation, params, self.main_index), moved

        with torch.no_grad():
            before = float(target_loss(torch.zeros_like(self.weights))[0])
        alpha = torch.ones_like(self.weights)
        for _ in range(self.config.alpha_steps):
            loss, moved = target_loss(alpha)
            gradient = deltas @ flatten_tensors(list(torch.autograd.grad(loss, moved)))
            alpha = alpha - self.config.alpha_lr * gradient
        with torch.no_grad():
            after = float(target_loss(alpha)[0])
        return alpha, before, after

    def state_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights.clone(),
            "steps_this_epoch": self.steps_this_epoch,
            "task_stream": self.task_stream.state_dict(),
            "validation_stream": self.validation_stream.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights = state["weights"].to(self.ctx.device)
        self.steps_this_epoch = int(state["steps_this_epoch"])
        self.task_stream.load_state_dict(state["task_stream"])
        self.validation_stream.load_state_dict(state["validation_stream"])
