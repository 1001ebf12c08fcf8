"""The engine's adapters for the classic multitask weightings: each method plugin builds its rule
from its options and the run (every update rule is written once, in its own module, and used by
the engine, your own loop and data-parallel runs alike).

Rules that combine gradients (MGDA, PCGrad, CAGrad, Nash-MTL, IMTL, Aligned-MTL, GradNorm) share
two options: ``interaction`` — compare the gradients on the shared parameters (the papers'
algorithms) or on the trunk's output (``features``: MGDA-UB's upper bound, backward passes
through the heads only) — and ``gradients`` — with parameters, the Gram matrix of a recorded
forward pass (``gram``) or the K gradient rows (``rows``; the same step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from twcore.contract.batch import Batch
from twcore.contract.method import MethodContext, StepResult
from twcore.contract.options import option
from twcore.contract.spec import Requirements
from twcore.contract.weighting_method import (
    AUTO,
    GRADIENT_PATHS,
    INTERACTIONS,
    WeightingMethod,
    compares_on_features,
)
from twcore_method_mtl.aligned_mtl import AlignedMTL
from twcore_method_mtl.cagrad import RESCALES, CAGrad
from twcore_method_mtl.dwa import DynamicWeightAverage
from twcore_method_mtl.famo import FAMO
from twcore_method_mtl.gradnorm import GradNorm
from twcore_method_mtl.imtl import IMTL
from twcore_method_mtl.mgda import MGDA, NORMALIZATIONS
from twcore_method_mtl.nash_mtl import NashMTL
from twcore_method_mtl.pcgrad import PCGrad
from twcore_method_mtl.rlw import RandomLossWeighting
from twcore_method_mtl.uncertainty import UncertaintyWeighting

SEVERAL = Requirements(min_objectives=2)


def _learning_rate(lr: float | None, ctx: MethodContext) -> float:
    """A rule's own learning rate: its option, else the run's (``optim.lr``)."""
    return float(lr) if lr is not None else float(ctx.optim_config.lr)


def _lr_option() -> Any:
    return option(
        None,
        gt=0,
        help="learning rate of the rule's own parameters (Adam); null: the run's optim.lr",
    )


@dataclass
class GradientOptions:
    """The options of every rule that combines the objectives' gradients."""

    interaction: str = option(
        "parameters",
        choices=INTERACTIONS,
        help="gradients compared: parameters (shared by several objectives; the papers' "
        "algorithms), features (the trunk's output, as MGDA-UB: heads-only backward passes), "
        "or auto (features if the model's trunk has parameters)",
    )
    gradients: str = option(
        AUTO,
        choices=GRADIENT_PATHS,
        help="with interaction=parameters, gram: the Gram matrix of a recorded forward pass; "
        "rows: the K gradient rows (the reference path; the same step); auto: the one with "
        "fewer estimated multiply-adds on the first step's shapes",
    )


class GradientMethod(WeightingMethod):
    """A weighting method whose rule compares gradients: ``interaction`` decides on what."""

    requirements = SEVERAL

    def __init__(self, config: Any, ctx: MethodContext) -> None:
        self.on_features = compares_on_features(config.interaction, ctx.model)
        super().__init__(config, ctx)


@dataclass
class UncertaintyConfig:
    lr: float | None = _lr_option()


class UncertaintyMethod(WeightingMethod):
    """Weights e^{−s_k} with learned log-variances (Kendall et al. 2018)."""

    Config = UncertaintyConfig
    requirements = SEVERAL

    def build_rule(self, config: UncertaintyConfig, ctx: MethodContext) -> UncertaintyWeighting:
        return UncertaintyWeighting(ctx.spec.num_objectives, lr=_learning_rate(config.lr, ctx))


@dataclass
class DWAConfig:
    temperature: float = option(2.0, gt=0, help="T, the softmax temperature (the paper's 2)")
    period: int = option(
        100, ge=1, help="steps per period whose mean losses are compared (the paper: an epoch)"
    )


class DWAMethod(WeightingMethod):
    """Weights from how slowly each loss fell over the last two periods (Liu et al. 2019)."""

    Config = DWAConfig
    requirements = SEVERAL

    def build_rule(self, config: DWAConfig, ctx: MethodContext) -> DynamicWeightAverage:
        return DynamicWeightAverage(
            ctx.spec.num_objectives, temperature=config.temperature, period=config.period
        )


@dataclass
class RLWConfig:
    pass


class RLWMethod(WeightingMethod):
    """Softmax of standard normal weights, drawn every step (Lin et al. 2022)."""

    Config = RLWConfig
    requirements = SEVERAL

    def build_rule(self, config: RLWConfig, ctx: MethodContext) -> RandomLossWeighting:
        return RandomLossWeighting(ctx.spec.num_objectives, seed=ctx.seed)


@dataclass
class FAMOConfig:
    lr: float = option(0.025, gt=0, help="β, the logits' Adam learning rate (the paper's 0.025)")
    weight_decay: float = option(1e-3, ge=0, help="γ, the logits' weight decay (the paper's 0.001)")


class FAMOMethod(WeightingMethod):
    """Weights that balance the objectives' rates of improvement (Liu et al. 2023); the logits
    learn from the losses after the step, recomputed on the same batch."""

    Config = FAMOConfig
    requirements = SEVERAL
    # Its logits learn from the losses after the step: a step float16's loss scale skips would
    # leave them learning from no change at all.
    loss_scaling = False

    def build_rule(self, config: FAMOConfig, ctx: MethodContext) -> FAMO:
        return FAMO(ctx.spec.num_objectives, lr=config.lr, weight_decay=config.weight_decay)

    def train_step(self, batch: Batch) -> StepResult:
        result = super().train_step(batch)
        rule = self.rule
        assert isinstance(rule, FAMO)
        if rule.pending is not None:  # a diverged step took none
            with torch.no_grad():
                after = self.ctx.objective_losses(batch)
            if bool(torch.isfinite(after).all()):
                rule.update(after)
        return result


@dataclass
class GradNormConfig(GradientOptions):
    alpha: float = option(1.5, ge=0, help="α, the asymmetry (the paper's 1.5 on NYUv2)")
    lr: float | None = _lr_option()


class GradNormMethod(GradientMethod):
    """Loss weights learned to balance the objectives' gradient norms (Chen et al. 2018)."""

    Config = GradNormConfig

    def build_rule(self, config: GradNormConfig, ctx: MethodContext) -> GradNorm:
        lr = _learning_rate(config.lr, ctx)
        return GradNorm(ctx.spec.num_objectives, alpha=config.alpha, lr=lr)


@dataclass
class PCGradConfig(GradientOptions):
    pass


class PCGradMethod(GradientMethod):
    """Conflicting gradients projected off each other's normal planes (Yu et al. 2020)."""

    Config = PCGradConfig

    def build_rule(self, config: PCGradConfig, ctx: MethodContext) -> PCGrad:
        return PCGrad(ctx.spec.num_objectives, seed=ctx.seed)


@dataclass
class MGDAConfig(GradientOptions):
    normalization: str = option(
        "none",
        choices=NORMALIZATIONS,
        help="gradient normalisation before solving: none (the paper's algorithm), l2, loss, "
        "loss+ (the authors' code's options)",
    )


class MGDAMethod(GradientMethod):
    """The minimum-norm convex combination of the objectives' gradients (Sener & Koltun 2018)."""

    Config = MGDAConfig

    def build_rule(self, config: MGDAConfig, ctx: MethodContext) -> MGDA:
        return MGDA(ctx.spec.num_objectives, normalization=config.normalization)


@dataclass
class MGDAUBConfig(MGDAConfig):
    interaction: str = option(
        "features",
        choices=INTERACTIONS,
        help="gradients compared: features (the trunk's output: MGDA-UB), parameters, or auto",
    )


class MGDAUBMethod(MGDAMethod):
    """MGDA on the gradients of the shared representation: the paper's upper bound (MGDA-UB),
    one backward pass through the heads per objective."""

    Config = MGDAUBConfig


@dataclass
class CAGradConfig(GradientOptions):
    c: float = option(0.4, ge=0, help="c, the radius around the average gradient (paper: 0.4)")
    rescale: str = option(
        "1+c^2", choices=RESCALES, help="divide the direction by 1+c^2 (the authors'), 1+c or none"
    )


class CAGradMethod(GradientMethod):
    """The direction near the average gradient that most improves the worst objective (Liu et
    al. 2021)."""

    Config = CAGradConfig

    def build_rule(self, config: CAGradConfig, ctx: MethodContext) -> CAGrad:
        return CAGrad(ctx.spec.num_objectives, c=config.c, rescale=config.rescale)


@dataclass
class NashMTLConfig(GradientOptions):
    max_norm: float = option(
        1.0, ge=0, help="clip the shared direction's norm to this (the paper's 1.0; 0: never)"
    )


class NashMTLMethod(GradientMethod):
    """The Nash bargaining solution of the objectives over directions (Navon et al. 2022)."""

    Config = NashMTLConfig

    def build_rule(self, config: NashMTLConfig, ctx: MethodContext) -> NashMTL:
        return NashMTL(ctx.spec.num_objectives, max_norm=config.max_norm)


@dataclass
class IMTLConfig(GradientOptions):
    loss_scale: bool = option(
        True, help="learn the loss scales (IMTL-L; with IMTL-G the paper's IMTL), or IMTL-G only"
    )
    lr: float | None = _lr_option()


class IMTLMethod(GradientMethod):
    """Equal projections of the shared direction on every objective's unit gradient, on learned
    loss scales (Liu et al. 2021)."""

    Config = IMTLConfig

    def build_rule(self, config: IMTLConfig, ctx: MethodContext) -> IMTL:
        lr = _learning_rate(config.lr, ctx)
        return IMTL(ctx.spec.num_objectives, loss_scale=config.loss_scale, lr=lr)


@dataclass
class AlignedMTLConfig(GradientOptions):
    pass


class AlignedMTLMethod(GradientMethod):
    """Gradients aligned to be orthogonal with equal norms, then averaged (Senushkin et al.
    2023)."""

    Config = AlignedMTLConfig

    def build_rule(self, config: AlignedMTLConfig, ctx: MethodContext) -> AlignedMTL:
        return AlignedMTL(ctx.spec.num_objectives)
