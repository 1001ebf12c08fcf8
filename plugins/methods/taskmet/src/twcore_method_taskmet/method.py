"""The ``taskmet`` method: the engine's adapter for :class:`~twcore_method_taskmet.rule.TaskMet`.

TaskMet learns the metric of the prediction loss from the task loss (Bansal et al. 2023).

Bilevel problem (paper eqs. 3–4):

    φ* = argmin_φ  L_task(θ*(φ))                            (outer: the downstream task loss)
    θ*(φ) = argmin_θ  E_x (ŷθ(x) − y)ᵀ Λφ(x) (ŷθ(x) − y)    (inner: metric-weighted prediction loss)

One engine step is one outer iteration:

1. *Inner* — train the predictor θ on the metric-weighted loss with φ fixed, warm-started: the
   model and the run's optimiser (``optim.*``, TaskMet: Adam) keep their state across outer
   iterations; ``inner_steps_first`` steps at the first outer iteration, ``inner_steps`` after;
   gradient norm clipped to ``inner_grad_clip``; stop early once it falls below ``inner_tol``.
2. *Hypergradient* — by the implicit function theorem at the inner solution,
   dL_task/dφ = −(∂²f/∂φ∂θ)ᵀ (H + ridge·I)⁻¹ ∇θ L_task, with (H + ridge·I)⁻¹ applied by
   conjugate gradients on Hessian-vector products (``hypergradient=normal_cg``: CG on the normal
   equations, which tolerates an indefinite H; ``cg``), or exactly for tiny predictors
   (``exact``); f on a random batch of ``hypergradient_batch`` training examples
   (:func:`twcore.autodiff.implicit_hypergradient`).
3. *Outer* — an Adam step (``outer_lr``) on φ.

Every ``validate_every`` outer iterations the task loss on the whole validation split is
computed; the predictor and metric with the lowest one are kept and restored at the end of
training. What the space, the residuals and the task loss are depends on the task: see
:mod:`twcore_method_taskmet.spaces`.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.media import Image
from twcore.contract.method import Method, MethodContext, StepResult
from twcore.contract.options import option
from twcore.contract.panels import Panel
from twcore.contract.spec import Capability, Requirements
from twcore_method_taskmet.metric import METRIC_KINDS, MetricNetwork
from twcore_method_taskmet.rule import HYPERGRADIENT_SOLVERS, TaskMet
from twcore_method_taskmet.spaces import prediction_space


@dataclass
class TaskMetConfig:
    metric: str = option(
        "auto",
        choices=("auto", *METRIC_KINDS),
        help="metric Λφ(x): full (LLᵀ + exp(s)I), diagonal, identity, or auto (full on decision "
        "tasks, diagonal over objectives)",
    )
    hidden: int = option(200, ge=1, help="hidden width of the metric network")
    metric_floor: float = option(
        0.0, ge=0, lt=1, help="diagonal metric: the least weight of any dimension (0: none)"
    )
    init_scale: float = option(0.01, ge=0, help="initial scale of the full metric's last layer")
    inner_steps_first: int = option(
        500, ge=0, help="inner (predictor) steps at the first outer step"
    )
    inner_steps: int = option(100, ge=0, help="inner steps at every later outer step (warm start)")
    inner_grad_clip: float = option(1.0, gt=0, help="clip the predictor's gradient norm to this")
    inner_tol: float = option(
        1e-5, ge=0, help="stop the inner loop once the gradient norm is below"
    )
    hypergradient: str = option(
        "normal_cg",
        choices=HYPERGRADIENT_SOLVERS,
        help="normal_cg, cg, or exact (tiny predictors)",
    )
    cg_iters: int = option(5, ge=1, help="conjugate-gradient iterations of the hypergradient")
    ridge: float = option(1e-5, ge=0, help="ridge added to the predictor's Hessian")
    hypergradient_batch: int = option(
        0, ge=0, help="examples the hypergradient's f uses (0: batch_size)"
    )
    outer_lr: float = option(1e-3, gt=0, help="Adam learning rate of the metric network φ")
    validate_every: int = option(10, ge=0, help="outer steps between validations (0: never)")
    log_image_every: int = option(10, ge=0, help="outer steps between images of Λ (0: never)")


class TaskMetMethod(Method):
    """TaskMet: the predictor learns on a metric-weighted loss whose metric learns the task.

    One engine step is one outer iteration of :class:`~twcore_method_taskmet.rule.TaskMet`; the
    adapter supplies the inner training (warm-started, clipped, stopped at a tolerance), the
    batches, the validation and the best state."""

    Config = TaskMetConfig
    # One step is a whole outer iteration (100 inner steps): far fewer steps than per-step methods.
    run_defaults: ClassVar[dict[str, Any]] = {"steps": 30, "eval_every": 10}
    outer_loop = True
    panels = (
        Panel(
            "learned metric Λ(x)",
            ("method/metric_image",),
            "media",
            "the metric of one training example over outer steps (full metric): which "
            "prediction dimensions, and which pairs, the task loss makes the model fit",
        ),
        Panel(
            "diagonal of Λ",
            ("method/metric_diagonal/*",),
            "line",
            "the weight of each predicted dimension over outer steps",
        ),
        Panel(
            "task loss (outer objective)",
            ("method/task_loss",),
            "line",
            "the downstream loss the metric is learned from, on validation batches",
        ),
        Panel(
            "inner training",
            ("method/inner_loss", "method/inner_steps", "method/hypergradient_norm"),
            "line",
            "whether the inner training converged and how large the implicit gradient was",
        ),
    )
    requirements = (
        Requirements(capabilities=frozenset({Capability.DECISION})),
        Requirements(main_auxiliary=True, capabilities=frozenset({Capability.VALIDATION})),
    )

    def __init__(self, config: TaskMetConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.inner_stream = ctx.stream("train")
        hyper_size = config.hypergradient_batch or ctx.batch_size
        self.hyper_stream = ctx.stream("train", batch_size=hyper_size)
        sample = next(ctx.stream("train", batch_size=1))
        self.space = prediction_space(ctx, sample)
        self.outer_stream = ctx.stream(self.space.outer_split)
        over_objectives = self.space.labels is not None
        self.metric_kind = config.metric
        if config.metric == "auto":
            self.metric_kind = "diagonal" if over_objectives else "full"
        if self.metric_kind == "full" and over_objectives:
            raise ValueError(
                "metric=full weighs residuals, but on this task TaskMet weighs objective losses: "
                "use metric=diagonal"
            )
        num_features = self.space.features(sample).shape[-1]
        metric = MetricNetwork(
            num_features,
            self.space.dim,
            self.metric_kind,
            config.hidden,
            config.init_scale,
            floor=config.metric_floor,
        ).to(ctx.device)
        self._metric = metric  # the rule's, typed as what it is (the rule takes any module)
        self.rule = TaskMet(
            metric,
            outer_lr=config.outer_lr,
            hypergradient=config.hypergradient,
            cg_iters=config.cg_iters,
            ridge=config.ridge,
        )
        self.outer_steps = 0
        self.skipped_inner = 0
        self.best_loss = float("inf")
        self.best_state: dict[str, Any] = {}
        self._built_at = time.perf_counter()

    @property
    def metric(self) -> MetricNetwork:
        """Λφ, the rule's metric network."""
        return self._metric

    # -- one outer iteration -----------------------------------------------------------------

    def train_step(self, batch: Batch) -> StepResult:
        ctx, config, space = self.ctx, self.config, self.space
        steps = config.inner_steps_first if self.outer_steps == 0 else config.inner_steps
        logs = self._train_inner(steps)
        if self.rule.metric_parameters:  # an identity metric learns nothing: no outer step
            # Both batches before any graph is built: drawing from an environment's stream may
            # change the agent or the model's buffers in place.
            hyper_batch, outer_batch = next(self.hyper_stream), next(self.outer_stream)

            def inner_loss() -> Tensor:
                metric = self.rule.metric_at(space.features(hyper_batch), trainable=True)
                return space.inner_loss(metric, hyper_batch).mean()

            logs |= self.rule.outer_step(
                inner_loss=inner_loss,
                task_loss=lambda: space.task_loss(outer_batch),
                predictor=list(ctx.model.parameters()),
            )
        logs.setdefault("skipped_outer_steps", self.rule.skipped)
        logs["skipped_inner_steps"] = self.skipped_inner
        self.outer_steps += 1
        logs.update(self._metric_logs(batch))
        if config.validate_every and self.outer_steps % config.validate_every == 0:
            logs["validation"] = self._validate()
        with torch.no_grad():
            losses = ctx.objective_losses(batch)
        weights = None
        if space.labels is not None:  # a diagonal metric over objectives is a weighting
            entries = self.rule.metric_at(space.features(batch)).diagonal_entries()
            weights = entries.mean(dim=0).to(losses.device)
        return StepResult(losses=losses, weights=weights, logs=logs)

    def _train_inner(self, steps: int) -> dict[str, Any]:
        """Warm-started inner training with φ fixed; the last loss, steps taken, last grad norm."""
        ctx = self.ctx
        parameters = list(ctx.model.parameters())
        loss_value, grad_norm, taken = float("nan"), float("nan"), 0
        for _ in range(steps):
            batch = next(self.inner_stream)
            metric = self.rule.metric_at(self.space.features(batch))
            loss = self.space.inner_loss(metric, batch).mean()
            ctx.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(parameters, self.config.inner_grad_clip)
            loss_value, grad_norm, taken = float(loss.detach()), float(norm), taken + 1
            if not math.isfinite(grad_norm):  # a non-finite loss or gradient: keep θ as it is
                self.skipped_inner += 1
                continue
            ctx.optimizer.step()
            if grad_norm < self.config.inner_tol:
                break
        return {"inner_loss": loss_value, "inner_steps": taken, "inner_grad_norm": grad_norm}

    # -- validation, best checkpoint, logging ------------------------------------------------

    def _validate(self) -> dict[str, float]:
        loss, metrics = self.space.validation_loss()
        if loss < self.best_loss:
            self.best_loss = loss
            self.best_state = {
                "model": _clone(self.ctx.model.state_dict()),
                "metric": _clone(self.metric.state_dict()),
                "outer_step": self.outer_steps,
            }
        # Seconds since the method was built in this process (for time-to-quality curves).
        elapsed = time.perf_counter() - self._built_at
        return {
            "task_loss": loss,
            "best_task_loss": self.best_loss,
            "elapsed_s": elapsed,
            **metrics,
        }

    def on_train_end(self) -> None:
        """Restore the predictor and metric with the best validation task loss."""
        if self.best_state:
            self.ctx.model.load_state_dict(self.best_state["model"])
            self.metric.load_state_dict(self.best_state["metric"])

    @torch.no_grad()
    def _metric_logs(self, batch: Batch) -> dict[str, Any]:
        if self.metric_kind == "identity":
            return {}
        metric = self.metric(self.space.features(batch.index(slice(0, 1))))
        diagonal = metric.diagonal_entries()[0].detach().cpu()
        logs: dict[str, Any] = {"metric_diagonal": diagonal}
        if self.metric_kind == "full":
            logs["metric_shift"] = float(metric.shift)
        every = self.config.log_image_every
        if every and self.outer_steps % every == 0:
            pixels = metric.matrix()[0].detach().cpu().numpy()
            caption = f"Λ(x) of one training example, outer step {self.outer_steps}"
            logs["metric_image"] = Image(pixels, caption=caption)
        return logs

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.state_dict(),
            "outer_steps": self.outer_steps,
            "skipped_inner": self.skipped_inner,
            "best_loss": self.best_loss,
            "best_state": copy.deepcopy(self.best_state),
            "streams": {
                "inner": self.inner_stream.state_dict(),
                "hyper": self.hyper_stream.state_dict(),
                "outer": self.outer_stream.state_dict(),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rule.load_state_dict(state["rule"])
        self.outer_steps = int(state["outer_steps"])
        self.skipped_inner = int(state["skipped_inner"])
        self.best_loss = float(state["best_loss"])
        self.best_state = state["best_state"]
        self.inner_stream.load_state_dict(state["streams"]["inner"])
        self.hyper_stream.load_state_dict(state["streams"]["hyper"])
        self.outer_stream.load_state_dict(state["streams"]["outer"])


def _clone(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {key: value.detach().clone() for key, value in state.items()}
