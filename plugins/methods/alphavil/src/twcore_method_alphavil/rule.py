"""αVIL as a rule for any training loop: task weights adjusted between epochs from task-specific
parameter updates (Kourdis, Gordon-Hall, Gorinski).

Between epochs, ordinary weighted multitask steps θ ← θ − α ∇θ Σ_i w_i L_i (weights start at 1).
After each epoch (paper, Alg. 1), :meth:`AlphaVIL.epoch_update`:

1. for every task i, a copy of the current parameters θ is trained on a ρ-fraction of an epoch
   of training batches with the loss w_i·L_i alone (plain SGD; the K copies share one [K, P]
   matrix, and the same batches unless each task has its own), and the change of the *shared*
   parameters δ_i = θ_i − θ is kept (the copies are dropped at once: memory holds K deltas);
2. mixing weights α (starting at 1) are fitted by gradient descent on the target task's
   validation loss at θ + Σ_i α_i δ_i; ∂/∂α_i is the dot product of that loss's gradient on the
   shared parameters with δ_i (one functional forward/backward pass per α step);
3. θ ← θ + Σ_i α_i δ_i on the shared parameters, and w_i ← max(0, w_i + α_i − 1).

In your own loop (the per-step part is a :class:`~twcore.contract.weighting.Weighting`)::

    rule = AlphaVIL(num_objectives=3, main=0)
    for epoch in range(epochs):
        for batch in loader:
            optimizer.zero_grad()
            rule.backward(torch.stack(losses_of(model, batch)))
            optimizer.step()
        rule.epoch_update(
            model, shared=[n for n, _ in model.trunk.named_parameters(prefix="trunk")],
            batches=iter(loader), task_loss=loss_at, dev_batch=next(iter(dev_loader)),
            steps=rule.copy_steps(len(loader)),
        )

where ``loss_at(params, batch, i)`` is objective i's mean loss on `batch` with the model's
parameters replaced by `params` (``torch.func.functional_call(model, params, ...)``). Tasks
with data of their own pass one iterator per task as `batches`; a validation loss that is not
one batch (a whole split, a metric) is passed as ``dev_loss(params)`` instead of `dev_batch`.

There is no public code; the choices this implementation makes are listed in the README.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from twcore.autodiff import flatten_tensors, unflatten_like
from twcore.contract.weighting import HeldWeights

TaskLoss = Callable[[Mapping[str, Tensor], Any, int], Tensor]
"""(parameters by name, batch, objective index) -> that objective's mean loss, differentiable
in the parameters."""

DevLoss = Callable[[Mapping[str, Tensor]], Tensor]
"""(parameters by name) -> the target objective's validation loss, differentiable in them."""


class AlphaVIL(HeldWeights):
    """The αVIL weights, their weighted step and their between-epoch update (module docstring).

    Args:
        num_objectives: K.
        main: the index of the target (main) objective.
        fraction: ρ, the share of an epoch each task-specific copy trains, in (0, 1].
        alpha_steps: gradient steps fitting the mixing weights α.
        alpha_lr: learning rate of the α fit (plain gradient descent).
        task_lr: learning rate of the task-specific copies (plain SGD, so w_i scales δ_i).
        task_grad_clip: clip each copy's gradient norm to this.
    """

    def __init__(
        self,
        num_objectives: int,
        main: int,
        *,
        fraction: float = 0.25,
        alpha_steps: int = 10,
        alpha_lr: float = 0.1,
        task_lr: float = 0.2,
        task_grad_clip: float = 20.0,
    ) -> None:
        super().__init__(num_objectives)
        if not 0 <= main < num_objectives:
            raise ValueError(f"main={main} is not an objective index in 0..{num_objectives - 1}")
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction={fraction} must be in (0, 1]")
        if alpha_steps < 1 or not (alpha_lr > 0 and task_lr > 0 and task_grad_clip > 0):
            raise ValueError("alpha_steps must be >= 1 and the learning rates and clip > 0")
        self.main, self.fraction = main, fraction
        self.alpha_steps, self.alpha_lr = alpha_steps, alpha_lr
        self.task_lr, self.task_grad_clip = task_lr, task_grad_clip
        self.weights = torch.ones(num_objectives)

    def copy_steps(self, steps_this_epoch: int) -> int:
        """How many steps each task-specific copy trains: ⌈ρ · steps of the epoch⌉, at least 1."""
        return max(1, math.ceil(self.fraction * steps_this_epoch))

    def epoch_update(
        self,
        model: nn.Module,
        shared: Sequence[str],
        *,
        batches: Iterator[Any] | Sequence[Iterator[Any]],
        task_loss: TaskLoss,
        dev_batch: Any = None,
        dev_loss: DevLoss | None = None,
        steps: int,
    ) -> dict[str, Any]:
        """Move the shared parameters of `model` (named in `shared`) and the weights once
        (steps 1–3 of the module docstring), in place; return what was measured.

        Args:
            model: the model being trained (its parameters are θ).
            shared: names (as in ``named_parameters``) of the parameters the tasks share.
            batches: training batches: one iterator, whose every batch all K copies share
                (one draw per copy step), or K iterators, copy i drawing from the i-th (tasks
                with data of their own).
            task_loss: objective i's mean loss at given parameters (:data:`TaskLoss`).
            dev_batch: the target objective's validation batch for the α fit, scored with
                ``task_loss(params, dev_batch, main)``.
            dev_loss: instead of `dev_batch`, the target's validation loss as a function of the
                parameters (:data:`DevLoss`).
            steps: training steps of each copy (see :meth:`copy_steps`).

        Returns:
            ``alpha`` [K], ``task_weight`` [K] (after the update), the target's validation
            loss before and after, and ``task_steps``. If a copy or the α fit diverged, θ and
            the weights are left as they were (α reported as ones).
        """
        if (dev_batch is None) == (dev_loss is None):
            raise ValueError("epoch_update needs exactly one of dev_batch and dev_loss")
        if dev_loss is None:
            dev_loss = self._batch_loss(task_loss, dev_batch)
        base = {n: p.detach() for n, p in model.named_parameters()}
        self.weights = self.weights.to(next(iter(base.values())))
        deltas = self._task_deltas(base, shared, self._per_task(batches), task_loss, steps)
        alpha, before, after = self._fit_alpha(base, shared, deltas, dev_loss)
        if not (torch.isfinite(alpha).all() and torch.isfinite(deltas).all()):
            alpha, deltas, after = torch.ones_like(alpha), torch.zeros_like(deltas), before
        parameters = dict(model.named_parameters())
        moved = [parameters[n] for n in shared]
        with torch.no_grad():
            for parameter, change in zip(moved, unflatten_like(alpha @ deltas, moved), strict=True):
                parameter.add_(change)
            self.weights = (self.weights + alpha - 1).clamp_min(0)
        return {
            "alpha": dict(enumerate(alpha.tolist())),
            "task_weight": dict(enumerate(self.weights.tolist())),
            "target_val_loss_before": before,
            "target_val_loss_after": after,
            "task_steps": steps,
        }

    def _batch_loss(self, task_loss: TaskLoss, batch: Any) -> DevLoss:
        """The target objective's loss on `batch` as a function of the parameters."""
        return lambda params: task_loss(params, batch, self.main)

    def _per_task(
        self, batches: Iterator[Any] | Sequence[Iterator[Any]]
    ) -> Callable[[], list[Any]]:
        """A draw of one batch per copy: the same batch for all from one iterator, or one
        from each of K iterators."""
        if isinstance(batches, Sequence):
            if len(batches) != self.num_objectives:
                raise ValueError(
                    f"batches holds {len(batches)} iterators; one per task needs "
                    f"{self.num_objectives}"
                )
            streams = list(batches)
            return lambda: [next(stream) for stream in streams]
        return lambda: [next(batches)] * self.num_objectives

    def _task_deltas(
        self,
        base: dict[str, Tensor],
        shared: Sequence[str],
        draw: Callable[[], list[Any]],
        task_loss: TaskLoss,
        steps: int,
    ) -> Tensor:
        """δ_i [K, P_shared] for every task i after `steps` SGD steps of w_i·L_i from θ.

        All K copies live in one [K, P] matrix; `draw` gives each its batch of a step. A copy's
        gradient is one functional forward/backward pass: on CPU this was faster than one
        ``vmap(grad(...))`` over the K copies (README), so the copies are visited in turn; the
        step is one tensor update of the whole matrix.
        """
        names = list(base)
        like = [base[n] for n in names]
        copies = flatten_tensors(like).unsqueeze(0).repeat(self.num_objectives, 1)
        # Each copy's gradient is written straight into its row; parameters a task's loss does
        # not reach (the other tasks' heads) keep their zeros.
        gradients = torch.zeros_like(copies)
        rows = [unflatten_like(row, like) for row in gradients]
        for _ in range(steps):
            drawn = draw()
            for task, (copy, batch) in enumerate(zip(copies, drawn, strict=True)):
                leaves = [v.detach().requires_grad_() for v in unflatten_like(copy, like)]
                params = dict(zip(names, leaves, strict=True))
                loss = self.weights[task] * task_loss(params, batch, task)
                found = torch.autograd.grad(loss, leaves, allow_unused=True)
                used = [i for i, gradient in enumerate(found) if gradient is not None]
                torch._foreach_copy_([rows[task][i] for i in used], [found[i] for i in used])
            norms = torch.linalg.vector_norm(gradients, dim=1)
            scale = (self.task_grad_clip / norms.clamp_min(1e-12)).clamp(max=1.0)
            copies = copies - (self.task_lr * scale).unsqueeze(1) * gradients
        final = dict(zip(names, unflatten_like(copies, like), strict=True))
        changes = [(final[n] - base[n]).flatten(1) for n in shared]
        return torch.cat(changes, dim=1).detach()

    def _fit_alpha(
        self,
        base: dict[str, Tensor],
        shared: Sequence[str],
        deltas: Tensor,
        dev_loss: DevLoss,
    ) -> tuple[Tensor, float, float]:
        """α minimising the target task's validation loss at θ + Σ α_i δ_i; (α, loss at θ,
        loss at θ + Σ α_i δ_i).

        ∂/∂α_i is the dot product of the loss's gradient on the moved shared parameters with δ_i:
        one backward pass to those parameters and one [K, P] × [P] product per α step.
        """
        like = [base[n] for n in shared]
        flat = flatten_tensors(like)

        def target_loss(alpha: Tensor) -> tuple[Tensor, list[Tensor]]:
            moved = [v.requires_grad_() for v in unflatten_like(flat + alpha @ deltas, like)]
            params = {**base, **dict(zip(shared, moved, strict=True))}
            return dev_loss(params), moved

        with torch.no_grad():
            before = float(target_loss(torch.zeros_like(self.weights))[0])
        alpha = torch.ones_like(self.weights)
        for _ in range(self.alpha_steps):
            loss, moved = target_loss(alpha)
            gradient = deltas @ flatten_tensors(list(torch.autograd.grad(loss, moved)))
            alpha = alpha - self.alpha_lr * gradient
        with torch.no_grad():
            after = float(target_loss(alpha)[0])
        return alpha, before, after

    def state_dict(self) -> dict[str, Any]:
        """The weights (the only state αVIL keeps between epochs)."""
        return {"weights": self.weights.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.weights = state["weights"].detach().clone()
