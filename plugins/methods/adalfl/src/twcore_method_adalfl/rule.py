"""AdaLFL as a rule for any training loop: a learned loss replaces the base loss and is
meta-learned online (Raymond et al., Alg. 1).

Every step t, on the step's batch B_t and a meta batch B':

    g_t     = ∇θ mean_k ℓφ,k(f_θt(B_t))                   the learned loss's gradient
    θ_t+1   = step(θ_t, g_t)                             the optimiser's own step
    φ      ← Adam(φ, ∇φ mean_k L_k^base(f_θt+1(B')))      meta-objective: base loss at θ_t+1

ℓφ,k is objective k's learned loss (:class:`~twcore_method_adalfl.loss_network.LearnedLoss`, an
``nn.Module``). ``init="base"`` starts it at the base loss (base loss + a network whose output
layer is zero, so training starts exactly as plain training); ``init="network"`` uses the
network alone, randomly initialised (the paper then meta-trains it offline first).

The readable form is the textbook one (:meth:`AdaLFL.step` with ``one_step_late=False``): the
learned loss's gradient with its graph kept, θ' = the optimiser's step as a differentiable
function of it (:func:`~twcore_method_adalfl.optimizer_lookahead.optimizer_lookahead`), the base
loss at θ' on the meta batch differentiated in φ, then the real step. ``one_step_late=True``
computes the same meta-gradient one step later, when θ_t+1 is the model's parameters anyway
(:mod:`~twcore_method_adalfl.meta_gradient`): no second-order pass through the model, and with
no meta batch given the next step's own batch is the meta batch, so its forward pass serves
both. The θ trajectories are the same for the same meta batches (the tests check it, with SGD,
Adam and a gradient clip), as long as the model draws no random numbers (dropout): the two
forms run the meta forward pass at different moments, so dropout masks differ between them.
The engine uses the one-step-late form.

In your own loop (the model may return a tensor, or a dict of heads)::

    rule = AdaLFL([LearnedObjective(ObjectiveKind.CLASSIFICATION)], meta_lr=1e-3)
    for x, y in loader:
        batch = Batch(inputs=x, targets={"y": y})
        base_losses, logs = rule.step(model, optimizer, batch, meta_batches=meta_loader)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.func import functional_call

from twcore.contract.batch import Batch
from twcore.contract.losses import base_loss
from twcore.contract.spec import ObjectiveKind
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
from twcore_method_adalfl.optimizer_lookahead import optimizer_lookahead
from twcore_method_adalfl.optimizer_step_vjp import OptimizerStepVJP, step_with_vjp

OUTPUT = "output"
"""The head name of a model that returns one tensor rather than a dict of heads."""
INITS = ("base", "network")
FUSED_ADAM_DEVICES = ("cpu", "cuda")

BaseLosses = Callable[[Mapping[str, Tensor], Batch], Tensor]
"""(outputs by head, batch) -> the base loss of each objective [K], with its graph."""


@dataclass(frozen=True)
class LearnedObjective:
    """One objective the learned loss replaces: its kind, the head it reads and its target.

    Attributes:
        kind: classification (logits [B, C] against labels [B]) or regression.
        head: the model output it reads (``output`` for a model returning one tensor).
        target: the key of its targets in ``Batch.targets``.
    """

    kind: ObjectiveKind
    head: str = OUTPUT
    target: str = "y"


@dataclass
class TextbookPass:
    """The textbook meta-objective of one step (:meth:`AdaLFL.meta_objective`).

    Attributes:
        meta_loss: the base loss at θ' on the meta batch, a graph in φ.
        learned_loss: the learned loss at θ on the step's batch (its graph kept).
        gradients: parameter name -> g, the learned loss's gradient, with its graph.
        base_losses: [K] the base loss of each objective at θ on the step's batch, detached.
    """

    meta_loss: Tensor
    learned_loss: Tensor
    gradients: dict[str, Tensor]
    base_losses: Tensor


@dataclass
class MetaSlot:
    """The meta-update a model's last step left for its next one (one-step-late form).

    Attributes:
        pending: the graphs, in memory.
        record: the same step's inputs, from a checkpoint (rebuilt into `pending` when needed).
    """

    pending: PendingMetaGradient | None = None
    record: dict[str, Any] | None = None


class AdaLFL:
    """The learned loss ℓφ and its online meta-update (module docstring).

    Args:
        objectives: the objectives the learned loss replaces (each gets its own network).
        hidden: hidden widths of each loss network.
        init: ``base`` (base loss + a zero-output network) or ``network`` (the network alone).
        meta_lr: Adam learning rate of φ (0 freezes it).
        grad_clip: the global-norm clip of the model's gradient before its step, or None.
        one_step_late: the meta-gradient's form (module docstring).
        base_losses: the base loss of each objective (default: cross-entropy or mean squared
            error by kind, meaned over the batch).
        generator: the RNG φ is initialised from (default: the global one).
        device: where φ lives.
    """

    def __init__(
        self,
        objectives: Sequence[LearnedObjective],
        *,
        hidden: Sequence[int] = (50, 50),
        init: str = "base",
        meta_lr: float = 1e-3,
        grad_clip: float | None = None,
        one_step_late: bool = False,
        base_losses: BaseLosses | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if init not in INITS:
            raise ValueError(f"init={init!r} is not one of {', '.join(INITS)}")
        if not objectives:
            raise ValueError("AdaLFL needs at least one objective")
        self.objectives = list(objectives)
        self.with_base = init == "base"
        self.grad_clip, self.one_step_late = grad_clip, one_step_late
        self.base_losses = base_losses or self._default_base_losses
        # The mean over objectives, as in plain (equal-weighting) training.
        self.objective_weight = 1.0 / len(self.objectives)

        def networks() -> nn.ModuleList:
            return nn.ModuleList(
                LearnedLoss(o.kind, LossNetwork(hidden, zero_output=self.with_base))
                for o in self.objectives
            ).to(device)

        if generator is None:  # the global RNG, as any nn.Module's initialisation draws
            self.loss_networks = networks()
        else:  # the generator's draws only: the global RNG is left as it was
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
                self.loss_networks = networks()
        # fused where torch has the kernel (CPU, CUDA): one kernel per update for all of φ, half
        # the time of foreach on CPU.
        fused = torch.device(device).type in FUSED_ADAM_DEVICES
        self.meta_optimizer = torch.optim.Adam(
            self.loss_networks.parameters(), lr=meta_lr, fused=fused, foreach=not fused
        )
        self.slot = MetaSlot()

    # -- the learned loss -------------------------------------------------------------------

    def learned_losses(self, outputs: Mapping[str, Tensor], batch: Batch) -> tuple[Tensor, Tensor]:
        """(learned loss of each objective [K], base loss of each objective [K]) on `batch`."""
        self._follow(outputs)
        base = self.base_losses(outputs, batch)
        learned = torch.stack(
            [
                loss(outputs[o.head], batch.targets[o.target]).mean()
                for o, loss in zip(self.objectives, self.loss_networks, strict=True)
            ]
        )
        return (base + learned if self.with_base else learned), base

    def _follow(self, outputs: Mapping[str, Tensor]) -> None:
        """Move φ to the device and floating dtype of the model's outputs the first time they
        differ (a CUDA or float64 model), keeping the same parameters, so its optimiser is
        untouched."""
        like = next(iter(outputs.values()))
        first = next(self.loss_networks.parameters())
        if first.device != like.device or first.dtype != like.dtype:
            self.loss_networks.to(device=like.device, dtype=like.dtype)

    def _default_base_losses(self, outputs: Mapping[str, Tensor], batch: Batch) -> Tensor:
        return torch.stack(
            [
                base_loss(o.kind, outputs[o.head], batch.targets[o.target]).mean()
                for o in self.objectives
            ]
        )

    def curves(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """The learned loss of each objective as line plots (see :func:`loss_curves`)."""
        names = names or [str(i) for i in range(len(self.objectives))]
        return {
            name: loss_curves(loss, with_base=self.with_base, title=name)
            for name, loss in zip(names, self._loss_modules(), strict=True)
        }

    def _loss_modules(self) -> list[LearnedLoss]:
        # nn.ModuleList is not generic: mypy sees its items as plain modules.
        return [cast(LearnedLoss, loss) for loss in self.loss_networks]

    # -- one step ---------------------------------------------------------------------------

    def step(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        batch: Batch,
        *,
        meta_batches: Iterator[Batch] | None = None,
        slot: MetaSlot | None = None,
    ) -> tuple[Tensor, dict[str, Any]]:
        """One training step of `model` with the learned loss, and φ's meta-update.

        Args:
            model: the model (returning a tensor or a dict of heads), at θ_t.
            optimizer: its optimiser; it takes the step (SGD, Adam, AdamW, RMSprop).
            batch: the step's batch (``inputs``, and ``targets`` keyed as the objectives say).
            meta_batches: where meta batches come from, drawn when needed; required by the
                textbook form; for the one-step-late form None means "the next step's batch".
            slot: where a one-step-late step leaves its pending meta-update (default: the
                rule's own; a fresh :class:`MetaSlot` meta-trains φ on another model).

        Returns:
            (the base loss of each objective [K] on `batch` at θ_t, detached; logs:
            ``learned_loss``, and ``meta_loss`` and ``meta_skipped`` when φ was updated).
        """
        if self.one_step_late:
            return self._late_step(model, optimizer, batch, meta_batches, slot or self.slot)
        if meta_batches is None:
            raise ValueError("the textbook AdaLFL step needs meta_batches (one_step_late=False)")
        return self._textbook_step(model, optimizer, batch, meta_batches)

    def meta_objective(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        batch: Batch,
        meta_batch: Batch,
    ) -> TextbookPass:
        """The textbook meta-objective as a graph in φ: the learned loss's gradient g on
        `batch` with its graph kept, θ' = the optimiser's step as a differentiable function of
        g (nothing is stepped), and the base loss at θ' on `meta_batch`."""
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        learned, base = self.learned_losses(_heads(model(batch.inputs)), batch)
        value = self.objective_weight * learned.sum()
        found = torch.autograd.grad(
            value, list(params.values()), create_graph=True, allow_unused=True
        )
        named = {n: g for n, g in zip(params, found, strict=True) if g is not None}
        ahead = optimizer_lookahead(optimizer, params, named, grad_clip=self.grad_clip)
        # The meta forward pass runs on copies of the buffers (BatchNorm statistics move once a
        # step, as in plain training), at θ' where the step moves a parameter and θ elsewhere.
        scratch = {n: b.clone() for n, b in model.named_buffers()}
        meta_outputs = _heads(
            functional_call(model, {**params, **ahead, **scratch}, (meta_batch.inputs,))
        )
        meta = self.objective_weight * self.base_losses(meta_outputs, meta_batch).sum()
        return TextbookPass(meta, value, named, base.detach())

    def _textbook_step(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        batch: Batch,
        meta_batches: Iterator[Batch],
    ) -> tuple[Tensor, dict[str, Any]]:
        """The paper's step as written: the meta-objective (:meth:`meta_objective`)
        differentiated in φ, then the real step with g, then φ's update."""
        found = self.meta_objective(model, optimizer, batch, next(meta_batches))
        phi = list(self.loss_networks.parameters())
        grads = torch.autograd.grad(found.meta_loss, phi, allow_unused=True)
        phi_grads = [
            g if g is not None else torch.zeros_like(p) for g, p in zip(grads, phi, strict=True)
        ]
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        for name, parameter in params.items():  # a parameter the loss does not use: no grad
            if name in found.gradients:
                parameter.grad = found.gradients[name].detach()
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(list(params.values()), self.grad_clip)
        optimizer.step()
        updated = self._meta_update(found.meta_loss.detach(), phi_grads)
        logs = {
            "learned_loss": found.learned_loss.detach(),
            "meta_loss": found.meta_loss.detach(),
            "meta_skipped": float(not updated),
        }
        return found.base_losses, logs

    def _late_step(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        batch: Batch,
        meta_batches: Iterator[Batch] | None,
        slot: MetaSlot,
    ) -> tuple[Tensor, dict[str, Any]]:
        """Meta-update φ for the previous step (its lookahead is the current θ), then take the
        base step with the learned loss and keep what the next step's meta-update needs."""
        if slot.pending is None and slot.record is not None:
            slot.pending = self._rebuild(model, slot.record)
        slot.record = None
        rng = rng_state(batch.inputs.device)
        outputs, leaves = forward_at_copy(model, batch.inputs)
        outputs = _heads(outputs)
        self._follow(outputs)
        base = self.base_losses(outputs, batch)
        # With no meta batches the previous step's meta-objective is this batch's base loss: one
        # backward pass gives its gradient on θ (= θ′) and on the outputs (the learned loss's
        # base part), where the latter is needed.
        reuse = slot.pending is not None and meta_batches is None
        base_part, lookahead = self._base_gradients(outputs, leaves, base, with_leaves=reuse)
        logs: dict[str, Any] = {}
        if slot.pending is not None:
            if lookahead is None:
                assert meta_batches is not None
                meta_value, lookahead = self._meta_objective(model, leaves, next(meta_batches))
            else:
                meta_value = base_part[0]
            meta_gradient = slot.pending.meta_gradient(lookahead)
            updated = self._meta_update(meta_value.detach(), meta_gradient)
            logs = {"meta_loss": meta_value.detach(), "meta_skipped": float(not updated)}
            slot.pending = None
        step = learned_gradient(
            outputs, leaves, lambda out: self._output_gradients(out, batch, base_part)
        )
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        vjp = step_with_vjp(optimizer, params, step.gradients, grad_clip=self.grad_clip)
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
        # None where unused (allow_unused; torch's annotation says Tensor).
        on_heads: dict[str, Tensor | None] = dict(zip(heads, gradients[: len(heads)], strict=True))
        on_leaves: dict[str, Tensor | None] = dict(zip(names, gradients[len(heads) :], strict=True))
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
        for objective, loss in zip(self.objectives, self._loss_modules(), strict=True):
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
                base_gradient = base_gradients.get(head)
                if base_gradient is not None:
                    gradients[head] = gradients[head] + base_gradient
            learned = learned + base_value

        def phi_gradient(tangents: Mapping[str, Tensor]) -> list[Tensor]:
            # φ is every objective's loss network in turn (self.loss_networks.parameters()).
            return [
                gradient
                for head, found, scale in passes
                for gradient in found.phi_gradients(tangents[head] * scale)
            ]

        return learned.detach(), gradients, phi_gradient

    def _meta_objective(
        self, model: nn.Module, leaves: Mapping[str, Tensor], meta_batch: Batch
    ) -> tuple[Tensor, dict[str, Tensor | None]]:
        """(the meta-objective on a separate meta batch at θ, its gradient on θ)."""
        # The extra forward pass runs on copies of the buffers (BatchNorm statistics move once
        # a step, as in plain training).
        scratch = {n: b.clone() for n, b in model.named_buffers()}
        meta_outputs = _heads(functional_call(model, {**leaves, **scratch}, (meta_batch.inputs,)))
        value = self.objective_weight * self.base_losses(meta_outputs, meta_batch).sum()
        names = list(leaves)
        gradients = torch.autograd.grad(value, [leaves[n] for n in names], allow_unused=True)
        return value.detach(), dict(zip(names, gradients, strict=True))

    def _rebuild(self, model: nn.Module, record: Mapping[str, Any]) -> PendingMetaGradient:
        """The previous step's graphs again, from its checkpointed record: the same forward
        pass (same θ, batch and dropout draws, buffers untouched) and the same φ."""
        batch = Batch(**record["batch"])
        scratch = {n: b.clone() for n, b in model.named_buffers()}
        leaves = {n: theta.clone().requires_grad_() for n, theta in record["theta"].items()}
        replay = replayed_rng(batch.inputs.device, tuple(record["rng"]))
        with replay, cotangent_only_convolutions(model):
            outputs = _heads(functional_call(model, {**leaves, **scratch}, (batch.inputs,)))
        base = self.base_losses(outputs, batch)
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
        for parameter, value in zip(self.loss_networks.parameters(), gradient, strict=True):
            parameter.grad = value
        self.meta_optimizer.step()
        return True

    def meta_train(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        batches: Iterator[Batch],
        steps: int,
        *,
        meta_batches: Iterator[Batch] | None = None,
    ) -> list[float]:
        """The paper's offline initialisation: meta-train φ online on a scratch copy of `model`
        (with a fresh optimiser of `optimizer`'s kind and settings) for `steps` batches;
        `model` itself is not touched. Returns the meta-losses seen."""
        scratch = copy.deepcopy(model)
        scratch_optimizer = type(optimizer)(scratch.parameters(), **optimizer.defaults)
        slot = MetaSlot()
        meta_losses = []
        # One more step in the one-step-late form, whose meta-update for a step comes a step later.
        for _ in range(steps + 1 if self.one_step_late else steps):
            _, logs = self.step(
                scratch, scratch_optimizer, next(batches), meta_batches=meta_batches, slot=slot
            )
            if "meta_loss" in logs:
                meta_losses.append(float(logs["meta_loss"]))
        return meta_losses

    # -- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """φ, its optimiser, and the last step's record: the meta-update it left for the next
        step is rebuilt from it after a restore."""
        pending = self.slot.pending
        return {
            "losses": self.loss_networks.state_dict(),
            "meta_optimizer": self.meta_optimizer.state_dict(),
            "pending": pending.record if pending is not None else self.slot.record,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.loss_networks.load_state_dict(state["losses"])
        self.meta_optimizer.load_state_dict(state["meta_optimizer"])
        self.slot = MetaSlot(record=state["pending"])


def _heads(outputs: Tensor | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A model's outputs by head (:data:`OUTPUT` for a model returning one tensor)."""
    return dict(outputs) if isinstance(outputs, Mapping) else {OUTPUT: outputs}
