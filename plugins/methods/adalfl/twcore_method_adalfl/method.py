"""AdaLFL: a learned loss replaces the base loss and is meta-learned online (paper, Alg. 1).

Every step, on the step's batch B and a meta batch B' (a fresh training or validation batch):

    g   = ∇θ mean_k ℓφ,k(f_θ(B))                      (graph kept: g is a function of φ)
    θ'  = step(θ, g)                                  the run optimiser's own step, differentiable
    φ  ← Adam(φ, ∇φ mean_k L_k^base(f_θ'(B')))         the meta-objective: base loss at θ'
    θ  ← θ'                                           the optimiser steps with g: no second pass

ℓφ,k is objective k's learned loss (:mod:`~twcore_method_adalfl.loss_network`). ``init=base``
starts it at the base loss (base loss + a network whose output layer is zero, so training
starts exactly as plain training); ``init=offline`` uses the network alone, randomly initialised,
and first meta-trains it for ``offline_steps`` on a scratch copy of the model (the paper's short
offline phase), after which the model trains from its untouched initial parameters.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from twcore.batch import Batch
from twcore.config import option
from twcore.method import Method, MethodContext, StepResult
from twcore.spec import Capability, ObjectiveKind, Requirements
from twcore.task import stack_objective_losses
from twcore_method_adalfl.curves import loss_curves
from twcore_method_adalfl.loss_network import LearnedLoss, LossNetwork
from twcore_method_adalfl.meta_gradient import MetaStep, lookahead_meta_step

INITS = ("base", "offline")
META_DATA = ("train", "val")


@dataclass
class AdaLFLConfig:
    init: str = option(
        "base",
        help="base: base loss + a zero-output network (starts as plain training); offline: the "
        "network alone, meta-trained for offline_steps before training (the paper)",
    )
    offline_steps: int = option(100, help="meta-training steps of the offline phase (init=offline)")
    meta_lr: float = option(1e-3, help="Adam learning rate of the loss network (0 freezes it)")
    meta_data: str = option(
        "train", help="the meta-objective's batch: train (a fresh training batch) or val"
    )
    hidden: list[int] = option(
        default_factory=lambda: [50, 50], help="hidden widths of the loss network"
    )
    plot_every: int = option(
        250, help="steps between learned-loss curves logged as W&B line plots (0: never)"
    )

    def __post_init__(self) -> None:
        for key, choices in (("init", INITS), ("meta_data", META_DATA)):
            if getattr(self, key) not in choices:
                raise ValueError(
                    f"method.{key}='{getattr(self, key)}' is not one of {', '.join(choices)}"
                )
        if self.meta_lr < 0:
            raise ValueError(f"method.meta_lr={self.meta_lr} must be >= 0")
        if self.offline_steps < 0 or self.plot_every < 0:
            raise ValueError("method.offline_steps and method.plot_every must be >= 0")
        if not self.hidden or any(width < 1 for width in self.hidden):
            raise ValueError(f"method.hidden={list(self.hidden)} must hold positive widths")


class AdaLFL(Method):
    """Online loss function learning (module docstring)."""

    Config = AdaLFLConfig
    requirements = Requirements(
        objective_kinds=frozenset({ObjectiveKind.CLASSIFICATION, ObjectiveKind.REGRESSION})
    )

    def __init__(self, config: AdaLFLConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        if config.meta_data == "val" and Capability.VALIDATION not in ctx.spec.capabilities:
            raise ValueError(
                "method.meta_data='val' needs a task with a validation split; use "
                "method.meta_data=train"
            )
        self.with_base = config.init == "base"
        # The network's random initialisation draws from the method's RNG, not the global one
        # (which dropout and the engine use).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=ctx.generator)))
            self.losses = nn.ModuleList(
                LearnedLoss(o.kind, LossNetwork(config.hidden, zero_output=self.with_base))
                for o in ctx.spec.objectives
            ).to(ctx.device)
        self.meta_optimizer = torch.optim.Adam(self.losses.parameters(), lr=config.meta_lr)
        self.meta_stream = ctx.stream(config.meta_data)
        # The mean over objectives, as in plain (equal-weighting) training.
        self.objective_weight = 1.0 / ctx.spec.num_objectives
        self.initialised = config.init != "offline" or config.offline_steps == 0

    # -- the learned loss -------------------------------------------------------------------

    def learned_losses(self, outputs: dict[str, Tensor], batch: Batch) -> tuple[Tensor, Tensor]:
        """(learned loss of each objective [K], base loss of each objective [K]) on `batch`."""
        base = stack_objective_losses(self.ctx.task, outputs, batch)
        learned = torch.stack(
            [
                loss(outputs[o.head], batch.targets[o.target]).mean()
                for o, loss in zip(self.ctx.spec.objectives, self.losses, strict=True)
            ]
        )
        return (base + learned if self.with_base else learned), base

    # -- one step ---------------------------------------------------------------------------

    def train_step(self, batch: Batch) -> StepResult:
        if not self.initialised:
            self._offline_phase()
        ctx = self.ctx
        plot_every = self.config.plot_every
        if plot_every and ctx.step % plot_every == 0:
            ctx.log({"loss_curve": self.curves()})
        base, logs = self._online_step(ctx.model, ctx.optimizer, batch)
        return StepResult(losses=base, logs=logs)

    def meta_step(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, meta_batch: Batch
    ) -> MetaStep:
        """The meta-loss at the lookahead and its gradient with respect to φ; nothing is
        stepped (see :mod:`~twcore_method_adalfl.meta_gradient`)."""
        task, weight = self.ctx.task, self.objective_weight

        def learned_loss(outputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
            learned, base = self.learned_losses(dict(outputs), batch)
            return weight * learned.sum(), base

        def meta_loss(outputs: Mapping[str, Tensor]) -> Tensor:
            return weight * stack_objective_losses(task, outputs, meta_batch).sum()

        return lookahead_meta_step(
            model,
            optimizer,
            batch.inputs,
            meta_batch.inputs,
            learned_loss,
            meta_loss,
            list(self.losses.parameters()),
            grad_clip=self.ctx.optim_config.grad_clip,
        )

    def _online_step(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch
    ) -> tuple[Tensor, dict[str, Any]]:
        """Meta-update φ through the lookahead, then take the base step θ ← θ' (Alg. 1)."""
        step = self.meta_step(model, optimizer, batch, next(self.meta_stream))
        meta_updated = self._meta_update(step.meta_loss, step.meta_gradient)
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        for name, parameter in params.items():
            parameter.grad = step.gradients.get(name)
        clip = self.ctx.optim_config.grad_clip
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params.values(), clip)
        optimizer.step()
        logs = {
            "meta_loss": step.meta_loss,
            "learned_loss": step.learned_loss,
            "meta_skipped": float(not meta_updated),
        }
        return step.base_losses, logs

    def _meta_update(self, meta_loss: Tensor, gradient: list[Tensor | None]) -> bool:
        """One Adam step on φ; skipped (φ kept) if the meta-loss or its gradient is not finite."""
        finite = bool(torch.isfinite(meta_loss)) and all(
            bool(torch.isfinite(g).all()) for g in gradient if g is not None
        )
        if not finite:
            return False
        for parameter, value in zip(self.losses.parameters(), gradient, strict=True):
            parameter.grad = value
        self.meta_optimizer.step()
        return True

    def _offline_phase(self) -> None:
        """The paper's offline initialisation: meta-train ℓφ online on a scratch copy of the
        model for ``offline_steps`` training batches; the real model is not touched."""
        ctx = self.ctx
        scratch = copy.deepcopy(ctx.model)
        optimizer = ctx.make_optimizer(scratch.parameters())
        stream = ctx.stream("train")
        meta_losses = []
        for _ in range(self.config.offline_steps):
            _, logs = self._online_step(scratch, optimizer, next(stream))
            meta_losses.append(float(logs["meta_loss"]))
        self.initialised = True
        ctx.log({"offline": {"first_meta_loss": meta_losses[0], "last_meta_loss": meta_losses[-1]}})

    def on_train_end(self) -> None:
        if self.config.plot_every:
            self.ctx.log({"loss_curve": self.curves()})

    def curves(self) -> dict[str, Any]:
        """The learned loss of each objective as line plots (see :func:`loss_curves`)."""
        return {
            o.name: loss_curves(loss, with_base=self.with_base, title=o.name)
            for o, loss in zip(self.ctx.spec.objectives, self.losses, strict=True)
        }

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "losses": self.losses.state_dict(),
            "meta_optimizer": self.meta_optimizer.state_dict(),
            "meta_stream": self.meta_stream.state_dict(),
            "initialised": self.initialised,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses.load_state_dict(state["losses"])
        self.meta_optimizer.load_state_dict(state["meta_optimizer"])
        self.meta_stream.load_state_dict(state["meta_stream"])
        self.initialised = bool(state["initialised"])
