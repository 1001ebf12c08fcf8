"""AdaLFL: a learned loss replaces the base loss and is meta-learned online (paper, Alg. 1).

Every step t, on the step's batch B_t:

    g_t     = ∇θ mean_k ℓφ,k(f_θt(B_t))                   the learned loss's gradient
    θ_t+1   = step(θ_t, g_t)                             the run optimiser's own step
    φ      ← Adam(φ, ∇φ mean_k L_k^base(f_θt+1(B')))      meta-objective: base loss at θ_t+1

The meta-update of step t runs at the start of step t+1, where θ_t+1 is the model's
parameters: with ``meta_data=next`` (the default) B' is step t+1's own batch, so one forward
pass serves the meta-objective of step t and the learned loss of step t+1; ``train`` draws a
separate training batch and ``val`` a validation batch. Step t+1's learned loss uses the updated
φ either way, so the algorithm is the paper's: the update order is unchanged, only where the
work happens (:mod:`~twcore_method_adalfl.meta_gradient`).

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
from torch.func import functional_call

from twcore.contract.batch import Batch
from twcore.contract.method import Method, MethodContext, StepResult
from twcore.contract.options import option
from twcore.contract.spec import Capability, ObjectiveKind, Requirements
from twcore.contract.task import stack_objective_losses
from twcore_method_adalfl.cotangent_convolutions import cotangent_only_convolutions
from twcore_method_adalfl.curves import loss_curves
from twcore_method_adalfl.loss_network import LearnedLoss, LossNetwork
from twcore_method_adalfl.meta_gradient import (
    PendingMetaGradient,
    PhiGradient,
    forward_at_copy,
    learned_gradient,
    replayed_rng,
    rng_state,
)
from twcore_method_adalfl.optimizer_step_vjp import OptimizerStepVJP, step_with_vjp

INITS = ("base", "offline")
META_DATA = ("next", "train", "val")
FUSED_ADAM_DEVICES = ("cpu", "cuda")


@dataclass
class MetaSlot:
    """The meta-update a model's last step left for its next one.

    Attributes:
        pending: the graphs, in memory.
        record: the same step's inputs, from a checkpoint (rebuilt into `pending` when needed).
    """

    pending: PendingMetaGradient | None = None
    record: dict[str, Any] | None = None


@dataclass
class AdaLFLConfig:
    init: str = option(
        "base",
        choices=INITS,
        help="base: base loss + a zero-output network (starts as plain training); offline: the "
        "network alone, meta-trained for offline_steps before training (the paper)",
    )
    offline_steps: int = option(
        100, ge=0, help="meta-training steps of the offline phase (init=offline)"
    )
    meta_lr: float = option(
        1e-3, ge=0, help="Adam learning rate of the loss network (0 freezes it)"
    )
    meta_data: str = option(
        "next",
        choices=META_DATA,
        help="the meta-objective's batch: next (the next step's training batch: no extra "
        "forward pass), train (a separate training batch) or val",
    )
    hidden: list[int] = option(
        default_factory=lambda: [50, 50],
        ge=1,
        nonempty=True,
        help="hidden widths of the loss network",
    )
    plot_every: int = option(
        250, ge=0, help="steps between learned-loss curves logged as W&B line plots (0: never)"
    )


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
                "method.meta_data=next or train"
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
        # fused where torch has the kernel (CPU, CUDA): one kernel per update for all of φ, half
        # the time of foreach on CPU.
        fused = ctx.device.type in FUSED_ADAM_DEVICES
        self.meta_optimizer = torch.optim.Adam(
            self.losses.parameters(), lr=config.meta_lr, fused=fused, foreach=not fused
        )
        self.meta_stream = None if config.meta_data == "next" else ctx.stream(config.meta_data)
        self.slot = MetaSlot()
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
        base, logs = self._online_step(ctx.model, ctx.optimizer, batch, self.slot)
        return StepResult(losses=base, logs=logs)

    def _online_step(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, slot: MetaSlot
    ) -> tuple[Tensor, dict[str, Any]]:
        """Meta-update φ for the previous step (its lookahead is the current θ), then take the
        base step with the learned loss and keep what the next step's meta-update needs."""
        if slot.pending is None and slot.record is not None:
            slot.pending = self._rebuild(model, slot.record)
        slot.record = None
        rng = rng_state(batch.inputs.device)
        outputs, leaves = forward_at_copy(model, batch.inputs)
        base = stack_objective_losses(self.ctx.task, outputs, batch)
        # With meta_data=next the previous step's meta-objective is this batch's base loss: one
        # backward pass gives its gradient on θ (= θ′) and on the outputs (the learned loss's
        # base part), where the latter is needed.
        reuse = slot.pending is not None and self.meta_stream is None
        base_part, lookahead = self._base_gradients(outputs, leaves, base, with_leaves=reuse)
        logs: dict[str, Any] = {}
        if slot.pending is not None:
            if lookahead is None:
                meta_value, lookahead = self._meta_objective(model, leaves)
            else:
                meta_value = base_part[0]
            logs = self._meta_update_at(slot.pending, meta_value, lookahead)
            slot.pending = None
        step = learned_gradient(
            outputs, leaves, lambda out: self._output_gradients(out, batch, base_part)
        )
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        vjp = step_with_vjp(
            optimizer, params, step.gradients, grad_clip=self.ctx.optim_config.grad_clip
        )
        record = {
            "batch": {"inputs": batch.inputs, "targets": batch.targets, "context": batch.context},
            "theta": {n: leaf.detach() for n, leaf in leaves.items()},
            "rng": list(rng),
            "step_vjp": vjp.state_dict(),
        }
        slot.pending = step.pending(vjp, record)
        logs["learned_loss"] = step.learned_loss
        return base.detach(), logs

    def _base_gradients(
        self,
        outputs: Mapping[str, Tensor],
        leaves: Mapping[str, Tensor],
        base: Tensor,
        *,
        with_leaves: bool,
    ) -> tuple[tuple[Tensor, dict[str, Tensor | None]], dict[str, Tensor | None] | None]:
        """((the weighted base loss, its gradient on each head's outputs), its gradient on
        `leaves` if `with_leaves`): one backward pass that keeps the outputs' graph. The head
        gradients are skipped (empty) when neither the learned loss (``init=base``) nor the
        caller needs the pass."""
        value = self.objective_weight * base.sum()
        if not (self.with_base or with_leaves):
            return (value.detach(), {}), None
        heads, names = list(outputs), list(leaves) if with_leaves else []
        gradients = torch.autograd.grad(
            value,
            [outputs[h] for h in heads] + [leaves[n] for n in names],
            allow_unused=True,
            retain_graph=True,
        )
        on_heads = dict(zip(heads, gradients[: len(heads)], strict=True))
        on_leaves = dict(zip(names, gradients[len(heads) :], strict=True))
        return (value.detach(), on_heads), on_leaves if with_leaves else None

    def _output_gradients(
        self,
        outputs: Mapping[str, Tensor],
        batch: Batch,
        base_part: tuple[Tensor, Mapping[str, Tensor | None]],
    ) -> tuple[Tensor, dict[str, Tensor], PhiGradient]:
        """(the learned loss; head -> its derivative a in that head's outputs; head -> u ↦
        ∂⟨u, a⟩/∂φ), all detached. The loss network's part is written out
        (:meth:`LearnedLoss.gradient_pass`); the base loss's part (``init=base``), which does
        not depend on φ, is `base_part` (from :meth:`_base_gradients`)."""
        weight = self.objective_weight
        gradients: dict[str, Tensor] = {}
        values = []
        passes = []
        for objective, loss in zip(self.ctx.spec.objectives, self.losses, strict=True):
            predictions = outputs[objective.head]
            found = loss.gradient_pass(predictions, batch.targets[objective.target])
            values.append(found.value.mean())
            scale = weight / predictions.shape[0]  # of the batch mean
            passes.append((objective.head, found, scale))
            previous = gradients.get(objective.head)
            gradient = found.gradient * scale
            gradients[objective.head] = gradient if previous is None else previous + gradient
        learned = weight * torch.stack(values).sum()
        if self.with_base:
            base_value, base_gradients = base_part
            for head in gradients:
                if base_gradients.get(head) is not None:
                    gradients[head] = gradients[head] + base_gradients[head]
            learned = learned + base_value

        def phi_gradient(tangents: Mapping[str, Tensor]) -> list[Tensor]:
            # φ is every objective's loss network in turn (self.losses.parameters()).
            return [
                gradient
                for head, found, scale in passes
                for gradient in found.phi_gradients(tangents[head] * scale)
            ]

        return learned.detach(), gradients, phi_gradient

    def _meta_objective(
        self, model: nn.Module, leaves: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor | None]]:
        """(the meta-objective on a separate meta batch at θ, its gradient on θ)."""
        meta_batch = next(self.meta_stream)  # type: ignore[arg-type]
        # The extra forward pass runs on copies of the buffers (BatchNorm statistics move once
        # a step, as in plain training).
        scratch = {n: b.clone() for n, b in model.named_buffers()}
        meta_outputs = functional_call(model, {**leaves, **scratch}, (meta_batch.inputs,))
        value = (
            self.objective_weight
            * stack_objective_losses(self.ctx.task, meta_outputs, meta_batch).sum()
        )
        names = list(leaves)
        gradients = torch.autograd.grad(value, [leaves[n] for n in names], allow_unused=True)
        return value.detach(), dict(zip(names, gradients, strict=True))

    def _meta_update_at(
        self,
        pending: PendingMetaGradient,
        meta_value: Tensor,
        lookahead_gradients: Mapping[str, Tensor | None],
    ) -> dict[str, Any]:
        """The previous step's meta-update, from the meta-objective at θ (its lookahead) and
        that objective's gradient on θ."""
        meta_gradient = pending.meta_gradient(lookahead_gradients)
        updated = self._meta_update(meta_value.detach(), meta_gradient)
        return {"meta_loss": meta_value.detach(), "meta_skipped": float(not updated)}

    def _rebuild(self, model: nn.Module, record: Mapping[str, Any]) -> PendingMetaGradient:
        """The previous step's graphs again, from its checkpointed record: the same forward
        pass (same θ, batch and dropout draws, buffers untouched) and the same φ."""
        batch = Batch(**record["batch"])
        scratch = {n: b.clone() for n, b in model.named_buffers()}
        leaves = {n: theta.clone().requires_grad_() for n, theta in record["theta"].items()}
        replay = replayed_rng(batch.inputs.device, tuple(record["rng"]))
        with replay, cotangent_only_convolutions(model):
            outputs = dict(functional_call(model, {**leaves, **scratch}, (batch.inputs,)))
        base = stack_objective_losses(self.ctx.task, outputs, batch)
        base_part, _ = self._base_gradients(outputs, leaves, base, with_leaves=False)
        step = learned_gradient(
            outputs, leaves, lambda out: self._output_gradients(out, batch, base_part)
        )
        return step.pending(OptimizerStepVJP.from_state_dict(record["step_vjp"]), dict(record))

    def _meta_update(self, meta_loss: Tensor, gradient: list[Tensor]) -> bool:
        """One Adam step on φ; skipped (φ kept) if the meta-loss or its gradient is not finite
        (or so large that its norm overflows)."""
        # One check: a NaN or an infinity anywhere makes the sum of the norms non-finite.
        norms = torch.stack([meta_loss.detach(), *torch._foreach_norm(gradient)])
        if not bool(torch.isfinite(norms.sum())):
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
        slot = MetaSlot()
        meta_losses = []
        for _ in range(self.config.offline_steps + 1):  # the last step only meta-updates
            _, logs = self._online_step(scratch, optimizer, next(stream), slot)
            if "meta_loss" in logs:
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
        """φ, its optimiser, the meta stream, and the last step's record: the meta-update it
        left for the next step is rebuilt from it after a resume."""
        pending = self.slot.pending
        return {
            "losses": self.losses.state_dict(),
            "meta_optimizer": self.meta_optimizer.state_dict(),
            "meta_stream": self.meta_stream.state_dict() if self.meta_stream else None,
            "initialised": self.initialised,
            "pending": pending.record if pending is not None else self.slot.record,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses.load_state_dict(state["losses"])
        self.meta_optimizer.load_state_dict(state["meta_optimizer"])
        if self.meta_stream is not None:
            self.meta_stream.load_state_dict(state["meta_stream"])
        self.initialised = bool(state["initialised"])
        self.slot = MetaSlot(record=state["pending"])
