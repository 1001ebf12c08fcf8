"""The method interface fits the five loop shapes of the target methods without core changes.

Each class below is a small but real instance of one shape, written only against the public
API (MethodContext, twcore.autodiff), and each passes the full method conformance suite —
including a run stopped halfway and resumed ending with exactly the metrics of an uninterrupted
one, which fails if any state the shape keeps is missed by the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from twcore.autodiff import cosine_to, implicit_hypergradient, per_objective_grads, write_flat_grad
from twcore.contract.losses import base_loss
from twcore.contract.method import Method, StepResult
from twcore.contract.options import option
from twcore.contract.spec import Requirements
from twcore.testing import MethodConformance
from twcore.testing.lookahead import commit_lookahead, sgd_lookahead


class CosineWeighting(Method):
    """Shape 1 — per-step weights from per-objective gradients (GradCos-like): on shared
    parameters, each auxiliary gradient is weighted by max(0, cos(g_main, g_aux))."""

    requirements = Requirements(main_auxiliary=True)

    def train_step(self, batch):
        ctx = self.ctx
        losses = ctx.objective_losses(batch)
        shared = ctx.model.shared_parameters()
        grads = per_objective_grads(losses, shared)  # [K, P], one batched backward
        main = ctx.spec.main_index
        weights = cosine_to(grads[main], grads).clamp_min(0.0).detach()
        weights[main] = 1.0
        ctx.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # every head gets its own objective's gradient
        write_flat_grad(shared, weights @ grads)  # the shared update is the weighted sum
        ctx.optimizer_step()
        return StepResult(losses.detach(), weights)


@dataclass
class LookaheadConfig:
    inner_lr: float = option(0.1, help="SGD step of the lookahead")
    meta_lr: float = option(0.05, help="Adam step of the objective weights")


class LookaheadWeighting(Method):
    """Shape 2 — per-step meta-update through a differentiable one-step lookahead: weights
    softmax(φ) are updated so that the main validation loss after the step decreases; the
    lookahead θ' is the base update."""

    Config = LookaheadConfig
    requirements = Requirements(main_auxiliary=True, capabilities=frozenset({"validation"}))

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.logits = torch.zeros(ctx.spec.num_objectives, device=ctx.device, requires_grad=True)
        self.meta_optimizer = torch.optim.Adam([self.logits], lr=config.meta_lr)
        self.validation = ctx.stream("val")

    def train_step(self, batch):
        ctx = self.ctx
        params = dict(ctx.model.named_parameters())
        losses = ctx.objective_losses(batch)
        weights = torch.softmax(self.logits, dim=0)
        ahead = sgd_lookahead(params, (weights * losses).sum(), self.config.inner_lr)
        meta_loss = ctx.objective_losses(next(self.validation), ahead)[ctx.spec.main_index]
        self.meta_optimizer.zero_grad(set_to_none=True)
        meta_loss.backward()
        self.meta_optimizer.step()
        commit_lookahead(ctx.model, ahead)
        return StepResult(losses.detach(), weights.detach(), {"meta_loss": meta_loss.detach()})

    def state_dict(self):
        return {
            "logits": self.logits.detach().clone(),
            "meta": self.meta_optimizer.state_dict(),
            "validation": self.validation.state_dict(),
        }

    def load_state_dict(self, state):
        with torch.no_grad():
            self.logits.copy_(state["logits"])
        self.meta_optimizer.load_state_dict(state["meta"])
        self.validation.load_state_dict(state["validation"])


class EpochDeltaWeighting(Method):
    """Shape 3 — per-epoch updates from task-specific parameter deltas (αVIL-like): after each
    epoch, per-objective deltas δ_k of the shared parameters from a few steps of one objective
    each; mixing weights α take one gradient step on the main validation loss at θ + Σ α_k δ_k."""

    requirements = Requirements(main_auxiliary=True, capabilities=frozenset({"validation"}))

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.task_weights = torch.ones(ctx.spec.num_objectives, device=ctx.device)

    def train_step(self, batch):
        losses = self.ctx.objective_losses(batch)
        self.ctx.optimizer.zero_grad(set_to_none=True)
        (self.task_weights * losses).sum().backward()
        self.ctx.optimizer_step()
        return StepResult(losses.detach(), self.task_weights.clone())

    def on_epoch_end(self, epoch):
        ctx = self.ctx
        names = [n for n, _ in ctx.model.named_shared_parameters()]
        base = {n: p.detach() for n, p in ctx.model.named_parameters()}
        stream = ctx.stream("train")
        deltas = []
        for k in range(ctx.spec.num_objectives):
            params = {n: p.clone().requires_grad_(n in names) for n, p in base.items()}
            for _ in range(2):
                loss = ctx.objective_losses(next(stream), params)[k]
                params = {
                    n: p.detach().requires_grad_(n in names)
                    for n, p in sgd_lookahead(params, loss, 0.05, create_graph=False).items()
                }
            deltas.append({n: params[n].detach() - base[n] for n in names})
        alpha = torch.ones(len(deltas), device=ctx.device, requires_grad=True)
        mixed = dict(base)
        for n in names:
            mixed[n] = base[n] + sum(a * d[n] for a, d in zip(alpha, deltas, strict=True))
        main = ctx.spec.main_index
        dev_loss = ctx.objective_losses(next(ctx.stream("val")), mixed)[main]
        (gradient,) = torch.autograd.grad(dev_loss, alpha)
        alpha = (alpha - 0.5 * gradient).detach()
        with torch.no_grad():
            for n, p in ctx.model.named_shared_parameters():
                p.add_(sum(a * d[n] for a, d in zip(alpha, deltas, strict=True)))
            self.task_weights = (self.task_weights + alpha - 1).clamp_min(0.0)
        return {"alpha": alpha}

    def state_dict(self):
        return {"task_weights": self.task_weights}

    def load_state_dict(self, state):
        self.task_weights = state["task_weights"].to(self.ctx.device)


class BilevelWeighting(Method):
    """Shape 4 — bilevel training with an implicit hypergradient (TaskMet-like): one step is one
    outer iteration; the inner problem (weighted training loss) is warm-started and trained for
    a few batches drawn from its own stream, then the objective weights φ move along the
    implicit hypergradient of the main validation loss."""

    requirements = Requirements(main_auxiliary=True, capabilities=frozenset({"validation"}))

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.log_weights = torch.zeros(
            ctx.spec.num_objectives, device=ctx.device, requires_grad=True
        )
        self.outer_optimizer = torch.optim.Adam([self.log_weights], lr=0.05)
        self.inner_stream = ctx.stream("train")

    def train_step(self, batch):
        ctx = self.ctx
        weights = self.log_weights.exp()
        for _ in range(3):
            inner = (weights.detach() * ctx.objective_losses(next(self.inner_stream))).sum()
            ctx.optimizer.zero_grad(set_to_none=True)
            inner.backward()
            ctx.optimizer_step()
        params = list(ctx.model.parameters())
        inner_loss = (weights * ctx.objective_losses(batch)).sum()
        outer_loss = ctx.objective_losses(next(ctx.stream("val")))[ctx.spec.main_index]
        (hypergradient,) = implicit_hypergradient(
            inner_loss, outer_loss, params, [self.log_weights], iters=3, ridge=1e-2
        )
        self.outer_optimizer.zero_grad(set_to_none=True)
        self.log_weights.grad = hypergradient
        self.outer_optimizer.step()
        losses = ctx.objective_losses(batch).detach()
        return StepResult(losses, weights.detach(), {"hypergradient_norm": hypergradient.norm()})

    def state_dict(self):
        return {
            "log_weights": self.log_weights.detach().clone(),
            "outer": self.outer_optimizer.state_dict(),
            "inner_stream": self.inner_stream.state_dict(),
        }

    def load_state_dict(self, state):
        with torch.no_grad():
            self.log_weights.copy_(state["log_weights"])
        self.outer_optimizer.load_state_dict(state["outer"])
        self.inner_stream.load_state_dict(state["inner_stream"])


class LearnedLoss(Method):
    """Shape 5 — a learned loss replaces the base loss (AdaLFL-like): a small network maps
    (prediction, target) per output unit to a loss; it is meta-trained online so that a
    lookahead step on it lowers the base loss on the next training batch."""

    requirements = Requirements(objective_kinds=frozenset({"classification", "regression"}))

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.loss_network = nn.Sequential(nn.Linear(2, 8), nn.Softplus(), nn.Linear(8, 1)).to(
            ctx.device
        )
        self.meta_optimizer = torch.optim.Adam(self.loss_network.parameters(), lr=1e-3)

    def learned_losses(self, batch, params=None):
        outputs = self.ctx.outputs(batch, params)
        per_objective = []
        for objective in self.ctx.spec.objectives:
            prediction = outputs[objective.head]
            target = batch.targets[objective.target]
            if objective.kind == "classification":
                prediction = torch.softmax(prediction, dim=1)
                target = nn.functional.one_hot(target, prediction.shape[1]).to(prediction.dtype)
            pairs = torch.stack([prediction, target.reshape(prediction.shape)], dim=-1)
            per_objective.append(self.loss_network(pairs).squeeze(-1).sum(dim=1).mean())
        return torch.stack(per_objective)

    def base_losses(self, batch, params=None):
        outputs = self.ctx.outputs(batch, params)
        return torch.stack(
            [
                base_loss(o.kind, outputs[o.head], batch.targets[o.target]).mean()
                for o in self.ctx.spec.objectives
            ]
        )

    def train_step(self, batch):
        ctx = self.ctx
        params = dict(ctx.model.named_parameters())
        learned = self.learned_losses(batch)
        ahead = sgd_lookahead(params, learned.mean(), 0.05)
        meta_loss = self.base_losses(batch, ahead).mean()
        self.meta_optimizer.zero_grad(set_to_none=True)
        meta_loss.backward()
        self.meta_optimizer.step()
        commit_lookahead(ctx.model, ahead)
        return StepResult(self.base_losses(batch).detach(), logs={"meta_loss": meta_loss.detach()})

    def state_dict(self):
        return {
            "loss_network": self.loss_network.state_dict(),
            "meta": self.meta_optimizer.state_dict(),
        }

    def load_state_dict(self, state):
        self.loss_network.load_state_dict(state["loss_network"])
        self.meta_optimizer.load_state_dict(state["meta"])


class TestPerStepGradientWeighting(MethodConformance):
    method = CosineWeighting


class TestLookaheadMetaUpdate(MethodConformance):
    method = LookaheadWeighting


class TestPerEpochParameterDeltas(MethodConformance):
    method = EpochDeltaWeighting
    steps = 20  # the reference task has 8 batches of 32 per epoch: two epoch ends

    def test_epoch_end_changes_task_weights(self):
        harness = self.harness()
        harness.steps(8)
        assert harness.components.method.on_epoch_end(1)["alpha"].shape == (3,)
        assert not torch.equal(harness.components.method.task_weights, torch.ones(3))


class TestBilevelImplicitHypergradient(MethodConformance):
    method = BilevelWeighting


class TestLearnedLossReplacingTheBaseLoss(MethodConformance):
    method = LearnedLoss
