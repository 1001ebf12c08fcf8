"""The predict-then-optimise methods: the two baselines of decision-focused learning papers
(LODL, TaskMet) and the decision-focused losses of :mod:`twcore_method_dfl.losses`.

``two-stage``: θ ← θ − η ∇θ L_pred(θ), the task's prediction objectives (mean of their losses;
for the decision tasks, the MSE of the predicted item values); decisions are made afterwards.

Every other method here takes θ ← θ − η ∇θ [ mean_b ℓ(ŷθ, y)_b + α · L_pred(θ) ] for its
decision loss ℓ (α = ``prediction_weight``, 0 by default: the loss alone):

- ``dfl``: ℓ = −obj(y, z(ŷ)) through the task's differentiable decision layer z;
- ``spo-plus``: SPO+; ``pfyl``: perturbed Fenchel–Young; ``dpo``: the regret of the perturbed
  optimiser's decisions; ``nce``: noise-contrastive over a solution pool; ``ltr``: learning to
  rank over the pool, pointwise or listwise (see :mod:`twcore_method_dfl.losses`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.decision import SolverDecisionLayer, true_decisions
from twcore.contract.method import Method, MethodContext, StepResult
from twcore.contract.options import option
from twcore.contract.spec import Capability, Requirements
from twcore.contract.task import DecisionLayer, stack_objective_losses
from twcore_method_dfl.losses import (
    SolutionPool,
    noise_contrastive,
    perturbed_fenchel_young,
    perturbed_regret,
    rank_listwise,
    rank_pointwise,
    spo_plus,
)

DECISION = Requirements(capabilities=frozenset({Capability.DECISION}))
SOLVER = Requirements(capabilities=frozenset({Capability.DECISION_SOLVER}))
LINEAR = Requirements(
    capabilities=frozenset({Capability.DECISION_SOLVER, Capability.LINEAR_DECISION})
)
AFFINE = Requirements(
    capabilities=frozenset({Capability.DECISION_SOLVER, Capability.AFFINE_DECISION})
)


class TwoStage(Method):
    """Fit the predictions (the mean of the task's objective losses), ignore the decisions."""

    requirements = DECISION
    loss_scaling = True  # its one backward goes into the optimiser's step

    def train_step(self, batch: Batch) -> StepResult:
        losses = self.ctx.objective_losses(batch)
        self.ctx.optimizer.zero_grad(set_to_none=True)
        losses.mean().backward()
        self.ctx.optimizer_step()
        return StepResult(losses=losses.detach())


def _prediction_weight() -> Any:
    return option(0.0, ge=0, help="α, weight of the prediction loss added to the decision loss")


@dataclass
class DecisionFocusedConfig:
    prediction_weight: float = _prediction_weight()


class DecisionLossMethod(Method):
    """Train on a decision loss ℓ(ŷ, y) per instance plus α × the prediction loss; subclasses
    give ℓ (:meth:`decision_loss`) and the name it is logged under."""

    Config: ClassVar[type] = DecisionFocusedConfig
    logged_as: ClassVar[str]

    @abstractmethod
    def decision_loss(self, layer: Any, predictions: Tensor, batch: Batch) -> Tensor:
        """ℓ per instance [B] from the head's predictions (differentiable in them)."""

    def train_step(self, batch: Batch) -> StepResult:
        ctx, layer = self.ctx, self.ctx.task.decision
        assert layer is not None, "the decision requirement is checked before training"
        outputs = ctx.outputs(batch)
        losses = stack_objective_losses(ctx.task, outputs, batch)
        decision = self.decision_loss(layer, outputs[layer.head], batch).mean()
        ctx.optimizer.zero_grad(set_to_none=True)
        (decision + self.config.prediction_weight * losses.mean()).backward()
        ctx.optimizer_step()
        return StepResult(losses=losses.detach(), logs={self.logged_as: float(decision.detach())})


class DecisionFocused(DecisionLossMethod):
    """Train on the decision regret −obj(y, z(ŷ)) + α · prediction loss."""

    requirements = DECISION
    logged_as = "regret"

    def decision_loss(self, layer: DecisionLayer, predictions: Tensor, batch: Batch) -> Tensor:
        return -layer.objective(layer.decide(predictions, batch), batch)


class SPOPlus(DecisionLossMethod):
    """SPO+ (Elmachtoub & Grigas 2022): a convex surrogate of the regret, from exact solves
    (linear or affine objectives)."""

    requirements = AFFINE
    logged_as = "spo_plus"

    def decision_loss(
        self, layer: SolverDecisionLayer, predictions: Tensor, batch: Batch
    ) -> Tensor:
        return spo_plus(layer, predictions, batch)


@dataclass
class PerturbedConfig:
    prediction_weight: float = _prediction_weight()
    sigma: float = option(1.0, gt=0, help="σ, the scale of the Gaussian perturbation of ŷ")
    samples: int = option(10, ge=1, help="M, perturbations drawn per instance and step")


class PerturbedLossMethod(DecisionLossMethod):
    """A loss over M perturbations σZ of the predictions, drawn from the method's generator."""

    Config = PerturbedConfig
    perturbed_loss: ClassVar[Callable[..., Tensor]]

    def decision_loss(
        self, layer: SolverDecisionLayer, predictions: Tensor, batch: Batch
    ) -> Tensor:
        c = self.config
        loss = type(self).perturbed_loss
        return loss(
            layer,
            predictions,
            batch,
            sigma=c.sigma,
            samples=c.samples,
            generator=self.ctx.generator,
        )


class PerturbedFenchelYoung(PerturbedLossMethod):
    """Perturbed Fenchel–Young loss (Berthet et al. 2020; linear or affine objectives)."""

    requirements = AFFINE
    logged_as = "fenchel_young"
    perturbed_loss = perturbed_fenchel_young


class PerturbedOptimizer(PerturbedLossMethod):
    """The regret of the perturbed optimiser's decisions (DPO, Berthet et al. 2020)."""

    requirements = SOLVER
    logged_as = "regret"
    perturbed_loss = perturbed_regret


@dataclass
class PoolConfig:
    prediction_weight: float = _prediction_weight()
    solve_ratio: float = option(
        0.05, ge=0, le=1, help="fraction of steps whose predictions are solved into the pool"
    )
    pool_capacity: int = option(5000, ge=1, help="most solutions the pool keeps (oldest leave)")


class PooledLossMethod(DecisionLossMethod):
    """A loss over a pool of solutions: the batch's true optima join it every step, the
    predictions' optima on a fraction ``solve_ratio`` of the steps."""

    Config = PoolConfig
    requirements = LINEAR

    def __init__(self, config: Any, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.pool = SolutionPool(config.pool_capacity)

    @abstractmethod
    def pooled_loss(
        self,
        layer: SolverDecisionLayer,
        predictions: Tensor,
        batch: Batch,
        pool: Tensor,
        best: Tensor,
    ) -> Tensor:
        """ℓ per instance [B] against the pool [P, n], given the true optima z*(y) [B, n]."""

    def decision_loss(
        self, layer: SolverDecisionLayer, predictions: Tensor, batch: Batch
    ) -> Tensor:
        with torch.no_grad():
            best = true_decisions(layer, batch).reshape(len(batch), -1)
            self.pool.add(best)
            draw = torch.rand((), generator=self.ctx.generator)
            if float(draw) < self.config.solve_ratio:
                values = layer.values(predictions).detach()
                self.pool.add(layer.solve(values, batch).reshape(len(batch), -1))
        assert self.pool.solutions is not None
        return self.pooled_loss(layer, predictions, batch, self.pool.solutions, best)

    def state_dict(self) -> dict[str, Any]:
        return {"pool": self.pool.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pool.load_state_dict(state.get("pool", {}))


class NoiseContrastive(PooledLossMethod):
    """Noise-contrastive estimation over a solution pool (Mulamba et al. 2021)."""

    logged_as = "nce"

    def pooled_loss(
        self,
        layer: SolverDecisionLayer,
        predictions: Tensor,
        batch: Batch,
        pool: Tensor,
        best: Tensor,
    ) -> Tensor:
        return noise_contrastive(layer, predictions, batch, pool, best=best)


@dataclass
class RankConfig(PoolConfig):
    form: str = option(
        "listwise",
        choices=("listwise", "pointwise"),
        help="listwise: cross-entropy of the pool's softmax rankings; pointwise: squared "
        "error of each pooled solution's objective",
    )
    temperature: float = option(1.0, gt=0, help="τ of the listwise softmax")


class LearningToRank(PooledLossMethod):
    """Learning to rank the pooled solutions (Mandi et al. 2022)."""

    Config = RankConfig
    logged_as = "rank_loss"

    def pooled_loss(
        self,
        layer: SolverDecisionLayer,
        predictions: Tensor,
        batch: Batch,
        pool: Tensor,
        best: Tensor,
    ) -> Tensor:
        if self.config.form == "pointwise":
            return rank_pointwise(layer, predictions, batch, pool)
        return rank_listwise(layer, predictions, batch, pool, temperature=self.config.temperature)
