"""The ``ldro`` method: the engine's adapter for :class:`~twcore_method_ldro.rule.LookaheadDRO`,
comparing gradients on the shared parameters or on the trunk's output."""

from __future__ import annotations

from dataclasses import dataclass

from twcore.contract.method import MethodContext
from twcore.contract.options import option
from twcore.contract.panels import Panel
from twcore.contract.spec import Requirements
from twcore.contract.weighting_method import (
    AUTO,
    GRADIENT_PATHS,
    INTERACTIONS,
    WeightingMethod,
    compares_on_features,
)
from twcore_method_ldro.rule import MODES, LookaheadDRO


@dataclass
class LookaheadDROConfig:
    step_size: float = option(1e-2, gt=0, help="η, step size of the exponentiated update of w")
    lookahead: float = option(1e-1, gt=0, help="λ, weight of the gradient interaction in L")
    interaction_every: int = option(
        100, ge=1, help="k, steps between recomputations of the cosines"
    )
    mode: str = option(
        "online", choices=MODES, help="online (the paper's update) or exact (solve the game)"
    )
    interaction: str = option(
        "auto",
        choices=INTERACTIONS,
        help="gradients the cosines use: parameters (shared by several objectives), features "
        "(the trunk's output: heads-only backward passes, much cheaper), or auto (features if "
        "the model's trunk has parameters)",
    )
    gradients: str = option(
        AUTO,
        choices=GRADIENT_PATHS,
        help="with interaction=parameters, gram: cosines from the Gram matrix of a recorded "
        "forward pass; rows: the K gradient rows (the reference path; same cosines); auto: the "
        "one with fewer estimated multiply-adds on the first step's shapes",
    )


class LookaheadDROMethod(WeightingMethod):
    """Weights on the simplex from the lookahead game of the objectives' losses."""

    Config = LookaheadDROConfig
    requirements = Requirements(min_objectives=2)
    panels = (
        Panel(
            "loss of each objective after the step",
            ("method/lookahead_loss/*",),
            "line",
            "the lookahead losses whose worst case the weights minimise",
        ),
        Panel(
            "best response",
            ("method/best_response",),
            "line",
            "which objective is the worst case after the step",
        ),
    )

    def __init__(self, config: LookaheadDROConfig, ctx: MethodContext) -> None:
        # Which gradients the cosines compare: the shared parameters, or the trunk's output.
        self.on_features = compares_on_features(config.interaction, ctx.model)
        self.interaction = "features" if self.on_features else "parameters"
        super().__init__(config, ctx)

    def build_rule(self, config: LookaheadDROConfig, ctx: MethodContext) -> LookaheadDRO:
        return LookaheadDRO(
            ctx.spec.num_objectives,
            step_size=config.step_size,
            lookahead=config.lookahead,
            interaction_every=config.interaction_every,
            mode=config.mode,
        )
