"""The ``adalfl`` method: the engine's adapter for :class:`~twcore_method_adalfl.rule.AdaLFL`.

A learned loss replaces the base loss and is meta-learned online (paper, Alg. 1): every engine
step is one :meth:`AdaLFL.step <twcore_method_adalfl.rule.AdaLFL.step>` of the model with the
run's optimiser. The engine uses the rule's one-step-late form (``method.one_step_late``, on by
default): the meta-update of step t runs at the start of step t+1, where θ_t+1 is the model's
parameters; with ``meta_data=next`` (the default) the meta batch B' is step t+1's own batch, so
one forward pass serves the meta-objective of step t and the learned loss of step t+1; ``train``
draws a separate training batch and ``val`` a validation batch. Step t+1's learned loss uses the
updated φ either way, so the algorithm is the paper's: the update order is unchanged, only where
the work happens (:mod:`~twcore_method_adalfl.meta_gradient`).

``init=base`` starts the learned loss at the base loss (base loss + a network whose output
layer is zero, so training starts exactly as plain training); ``init=offline`` uses the network
alone, randomly initialised, and first meta-trains it for ``offline_steps`` on a scratch copy of
the model (the paper's short offline phase), after which the model trains from its untouched
initial parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.method import Method, MethodContext, StepResult
from twcore.contract.options import option
from twcore.contract.panels import Panel
from twcore.contract.spec import Capability, ObjectiveKind, Requirements
from twcore.contract.task import stack_objective_losses
from twcore_method_adalfl.rule import AdaLFL, LearnedObjective

INITS = ("base", "offline")
META_DATA = ("next", "train", "val")


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
    one_step_late: bool = option(
        True,
        help="compute the meta-gradient one step late, without a second-order pass through "
        "the model (false: the textbook create-graph form; needs meta_data=train or val)",
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

    def __post_init__(self) -> None:
        if not self.one_step_late and self.meta_data == "next":
            raise ValueError(
                "one_step_late=false needs meta_data=train or val: the textbook step takes its "
                "meta batch before the next step's batch exists"
            )


class AdaLFLMethod(Method):
    """Online loss function learning (module docstring)."""

    Config = AdaLFLConfig
    panels = (
        Panel(
            "learned loss",
            ("method/loss_curve/*",),
            "chart",
            "the loss network's output against the prediction, next to the base loss it "
            "started from, at each logged step",
        ),
        Panel(
            "meta loss",
            ("method/meta_loss",),
            "line",
            "the base loss after the one-step lookahead, which the loss network is trained on",
        ),
        Panel(
            "learned loss value",
            ("method/learned_loss",),
            "line",
            "what the model is actually trained on",
        ),
    )
    requirements = Requirements(
        objective_kinds=frozenset({ObjectiveKind.CLASSIFICATION, ObjectiveKind.REGRESSION})
    )

    def __init__(self, config: AdaLFLConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        if config.meta_data == "val" and Capability.VALIDATION not in ctx.spec.capabilities:
            raise ValueError(
                "meta_data='val' needs a task with a validation split; use meta_data=next or train"
            )
        self.rule = AdaLFL(
            [LearnedObjective(o.kind, o.head, o.target) for o in ctx.spec.objectives],
            hidden=config.hidden,
            init="base" if config.init == "base" else "network",
            meta_lr=config.meta_lr,
            grad_clip=ctx.optim_config.grad_clip,
            one_step_late=config.one_step_late,
            base_losses=self.base_losses,
            # The networks' initialisation draws from the method's RNG, not the global one
            # (which dropout and the engine use).
            generator=ctx.generator,
            device=ctx.device,
        )
        self.meta_stream = None if config.meta_data == "next" else ctx.stream(config.meta_data)
        self.initialised = config.init != "offline" or config.offline_steps == 0

    def base_losses(self, outputs: Mapping[str, Tensor], batch: Batch) -> Tensor:
        """The task's own loss of each objective [K] (the meta-objective, and the base part of
        the learned loss with ``init=base``)."""
        return stack_objective_losses(self.ctx.task, outputs, batch)

    def train_step(self, batch: Batch) -> StepResult:
        ctx = self.ctx
        if not self.initialised:
            meta_losses = self.rule.meta_train(
                ctx.model,
                ctx.optimizer,
                ctx.stream("train"),
                self.config.offline_steps,
                meta_batches=self.meta_stream,
            )
            self.initialised = True
            ctx.log(
                {"offline": {"first_meta_loss": meta_losses[0], "last_meta_loss": meta_losses[-1]}}
            )
        plot_every = self.config.plot_every
        if plot_every and ctx.step % plot_every == 0:
            ctx.log({"loss_curve": self.curves()})
        base, logs = self.rule.step(ctx.model, ctx.optimizer, batch, meta_batches=self.meta_stream)
        return StepResult(losses=base, logs=logs)

    def on_train_end(self) -> None:
        if self.config.plot_every:
            self.ctx.log({"loss_curve": self.curves()})

    def curves(self) -> dict[str, Any]:
        """The learned loss of each objective as line plots, by objective name."""
        return self.rule.curves(self.ctx.spec.objective_names)

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The rule (φ, its optimiser, the pending meta-update's record), the meta stream and
        whether the offline phase ran."""
        return {
            **self.rule.state_dict(),
            "meta_stream": self.meta_stream.state_dict() if self.meta_stream else None,
            "initialised": self.initialised,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rule.load_state_dict(state)
        if self.meta_stream is not None:
            self.meta_stream.load_state_dict(state["meta_stream"])
        self.initialised = bool(state["initialised"])
