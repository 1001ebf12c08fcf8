"""TaskMet as a rule for any training loop: learn the metric of the prediction loss from the task
loss (Bansal et al. 2023).

Bilevel problem (paper eqs. 3–4):

    φ* = argmin_φ  L_task(θ*(φ))                            (outer: the downstream task loss)
    θ*(φ) = argmin_θ  E_x (ŷθ(x) − y)ᵀ Λφ(x) (ŷθ(x) − y)    (inner: metric-weighted prediction loss)

The metric Λφ(x) is an ``nn.Module`` (:class:`~twcore_method_taskmet.metric.MetricNetwork`);
the predictor trains on the metric-weighted loss with φ held fixed (:meth:`TaskMet.metric_at`);
an outer step (:meth:`TaskMet.outer_step`) runs the caller's inner training, then takes the
implicit hypergradient at the trained predictor,

    dL_task/dφ = −(∂²f/∂φ∂θ)ᵀ (H + ridge·I)⁻¹ ∇θ L_task,

with (H + ridge·I)⁻¹ applied by conjugate gradients on Hessian-vector products
(:func:`twcore.autodiff.implicit_hypergradient`), and an Adam step on φ. In your own loop::

    rule = TaskMet(MetricNetwork(num_features, dim, "full"), outer_lr=1e-3)

    def train_inner():
        for _ in range(100):
            x, y = next(train)
            optimizer.zero_grad()
            rule.metric_at(x).quadratic(model(x) - y).mean().backward()
            optimizer.step()

    for outer in range(30):
        xh, yh = next(train)
        logs = rule.outer_step(
            train_inner=train_inner,
            inner_loss=lambda: rule.metric_at(xh, trainable=True).quadratic(model(xh) - yh).mean(),
            task_loss=lambda: regret(model(x_task), y_task),
            predictor=list(model.parameters()),
        )
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from twcore.autodiff import implicit_hypergradient
from twcore_method_taskmet.metric import Metric

HYPERGRADIENT_SOLVERS = ("normal_cg", "cg", "exact")


class TaskMet:
    """The learned metric and its outer update (module docstring).

    Args:
        metric: the metric network Λφ (features [B, F] -> a :class:`Metric`).
        outer_lr: Adam learning rate of φ.
        hypergradient: ``normal_cg`` (CG on the normal equations, which tolerates an indefinite
            Hessian), ``cg``, or ``exact`` (tiny predictors).
        cg_iters: conjugate-gradient iterations.
        ridge: the ridge added to the predictor's Hessian.
    """

    def __init__(
        self,
        metric: nn.Module,
        *,
        outer_lr: float = 1e-3,
        hypergradient: str = "normal_cg",
        cg_iters: int = 5,
        ridge: float = 1e-5,
    ) -> None:
        if hypergradient not in HYPERGRADIENT_SOLVERS:
            raise ValueError(
                f"hypergradient={hypergradient!r} is not one of {', '.join(HYPERGRADIENT_SOLVERS)}"
            )
        if not outer_lr > 0 or cg_iters < 1 or ridge < 0:
            raise ValueError("outer_lr must be > 0, cg_iters >= 1 and ridge >= 0")
        self.metric = metric
        self.solver, self.cg_iters, self.ridge = hypergradient, cg_iters, ridge
        self.metric_parameters = list(metric.parameters())
        self.optimizer = (
            torch.optim.Adam(self.metric_parameters, lr=outer_lr)
            if self.metric_parameters
            else None
        )
        self.skipped = 0

    def metric_at(self, features: Tensor, *, trainable: bool = False) -> Metric:
        """Λφ(x) for features [B, F]: with φ held fixed (for training the predictor), or with
        its graph to φ (`trainable`, for the hypergradient's inner loss)."""
        metric: Metric
        if trainable:
            metric = self.metric(features)
        else:
            with torch.no_grad():
                metric = self.metric(features)
        return metric

    def outer_step(
        self,
        *,
        inner_loss: Callable[[], Tensor],
        task_loss: Callable[[], Tensor],
        predictor: Sequence[Tensor],
        train_inner: Callable[[], Any] | None = None,
    ) -> dict[str, Any]:
        """One outer iteration: `train_inner()` (the caller's training of the predictor with φ
        fixed), then the implicit hypergradient of `task_loss()` at the trained predictor —
        treated as the minimiser of `inner_loss()`, which must keep its graph to φ (see
        :meth:`metric_at`) — and one Adam step on φ.

        A non-finite task loss or hypergradient (a diverged downstream learner, a failed solve)
        leaves φ as it is; the skip is counted (``skipped_outer_steps``).

        Returns:
            ``task_loss``, ``hypergradient_norm``, ``skipped_outer_steps``, and whatever
            `train_inner` returned, if it returned a dict.
        """
        inner_logs = train_inner() if train_inner is not None else None
        logs: dict[str, Any] = dict(inner_logs) if isinstance(inner_logs, dict) else {}
        if self.optimizer is not None:
            inner = inner_loss()
            outer = task_loss()
            grads = self.hypergradient(inner, outer, predictor)
            value = float(outer.detach())
            norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
            if math.isfinite(value) and bool(torch.isfinite(norm)):
                self.optimizer.zero_grad(set_to_none=True)
                for parameter, grad in zip(self.metric_parameters, grads, strict=True):
                    parameter.grad = grad
                self.optimizer.step()
            else:
                self.skipped += 1
            logs.update(task_loss=value, hypergradient_norm=float(norm))
        logs["skipped_outer_steps"] = self.skipped
        return logs

    def hypergradient(
        self, inner_loss: Tensor, task_loss: Tensor, predictor: Sequence[Tensor]
    ) -> list[Tensor]:
        """dL_task/dφ, one tensor per metric parameter, treating the predictor's current
        parameters as the minimiser of `inner_loss` (which keeps its graph to φ)."""
        return implicit_hypergradient(
            inner_loss,
            task_loss,
            [p for p in predictor if p.requires_grad],
            self.metric_parameters,
            solver=self.solver,
            iters=self.cg_iters,
            ridge=self.ridge,
        )

    def state_dict(self) -> dict[str, Any]:
        """φ, its optimiser and the count of skipped steps."""
        return {
            "metric": {k: v.detach().clone() for k, v in self.metric.state_dict().items()},
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else {},
            "skipped": self.skipped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.metric.load_state_dict(state["metric"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.skipped = int(state["skipped"])
