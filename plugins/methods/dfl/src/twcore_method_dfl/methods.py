"""The two baselines of decision-focused learning papers (LODL, TaskMet).

``two-stage``: θ ← θ − η ∇θ L_pred(θ), the task's prediction objectives (mean of their losses;
for the decision tasks, the MSE of the predicted item values); decisions are made afterwards.

``dfl``: θ ← θ − η ∇θ [ −obj(y, z*(ŷθ)) + α · L_pred(θ) ], the decision regret through the task's
differentiable decision layer z*, plus α times the prediction loss (α = ``prediction_weight``;
0 is pure decision-focused learning).
"""

from __future__ import annotations

from dataclasses import dataclass

from twcore.contract.batch import Batch
from twcore.contract.method import Method, StepResult
from twcore.contract.options import option
from twcore.contract.spec import Capability, Requirements
from twcore.contract.task import stack_objective_losses

DECISION = Requirements(capabilities=frozenset({Capability.DECISION}))


class TwoStage(Method):
    """Fit the predictions (the mean of the task's objective losses), ignore the decisions."""

    requirements = DECISION

    def train_step(self, batch: Batch) -> StepResult:
        losses = self.ctx.objective_losses(batch)
        self.ctx.optimizer.zero_grad(set_to_none=True)
        losses.mean().backward()
        self.ctx.optimizer_step()
        return StepResult(losses=losses.detach())


@dataclass
class DecisionFocusedConfig:
    prediction_weight: float = option(
        0.0, ge=0, help="α, weight of the prediction loss added to the decision regret"
    )


class DecisionFocused(Method):
    """Train on the decision regret −obj(y, z*(ŷ)) + α · prediction loss."""

    Config = DecisionFocusedConfig
    requirements = DECISION

    def train_step(self, batch: Batch) -> StepResult:
        ctx, layer = self.ctx, self.ctx.task.decision
        assert layer is not None, "the decision requirement is checked before training"
        outputs = ctx.outputs(batch)
        losses = stack_objective_losses(ctx.task, outputs, batch)
        regret = -layer.objective(layer.decide(outputs[layer.head], batch), batch).mean()
        ctx.optimizer.zero_grad(set_to_none=True)
        (regret + self.config.prediction_weight * losses.mean()).backward()
        ctx.optimizer_step()
        return StepResult(losses=losses.detach(), logs={"regret": float(regret.detach())})
