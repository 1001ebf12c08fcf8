"""The ``gradcos`` method: the engine's adapter for :class:`~twcore_method_gradcos.rule.GradCos`
(main objective from the task's spec, shared parameters from the model)."""

from __future__ import annotations

from dataclasses import dataclass

from twcore.contract.method import MethodContext
from twcore.contract.options import option
from twcore.contract.panels import Panel
from twcore.contract.spec import Requirements
from twcore.contract.weighting_method import AUTO, GRADIENT_PATHS, WeightingMethod
from twcore_method_gradcos.rule import VARIANTS, GradCos


@dataclass
class GradCosConfig:
    variant: str = option(
        "weighted",
        choices=VARIANTS,
        help="weighted (max(0, cos) · G_aux) or unweighted (cos > 0)",
    )
    gradients: str = option(
        AUTO,
        choices=GRADIENT_PATHS,
        help="gram: cosines from the Gram matrix of a recorded forward pass, the step's "
        "gradient from what it left; rows: the K gradient rows (the reference path; same "
        "step); auto: the one with fewer estimated multiply-adds on the first step's shapes",
    )


class GradCosMethod(WeightingMethod):
    """Auxiliary gradients on the shared parameters kept only as far as they agree with the main
    task's (see :mod:`twcore_method_gradcos.rule`)."""

    Config = GradCosConfig
    requirements = Requirements(main_auxiliary=True)
    panels = (
        Panel(
            "gradient cosines",
            ("method/cosine/*",),
            "line",
            "each auxiliary's gradient cosine with the main task's (its weight, or whether it "
            "is kept): the helpful ones stay positive",
        ),
    )

    def build_rule(self, config: GradCosConfig, ctx: MethodContext) -> GradCos:
        assert ctx.spec.main_index is not None  # the requirements ask for a main objective
        return GradCos(ctx.spec.num_objectives, ctx.spec.main_index, config.variant)
