"""Predict-then-optimise methods: ``two-stage`` (fit the predictions, then decide), ``dfl``
(train through the decision layer on the task loss) and the decision-focused losses ``spo-plus``,
``pfyl``, ``dpo``, ``nce`` and ``ltr`` (each also a plain function in
:mod:`twcore_method_dfl.losses`, for your own loop)."""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports

if TYPE_CHECKING:
    from twcore_method_dfl.losses import (
        SolutionPool,
        noise_contrastive,
        perturbed_fenchel_young,
        perturbed_optimum,
        perturbed_regret,
        rank_listwise,
        rank_pointwise,
        spo_plus,
    )
    from twcore_method_dfl.methods import (
        DecisionFocused,
        DecisionFocusedConfig,
        LearningToRank,
        NoiseContrastive,
        PerturbedFenchelYoung,
        PerturbedOptimizer,
        SPOPlus,
        TwoStage,
    )

__all__ = [
    "DecisionFocused",
    "DecisionFocusedConfig",
    "LearningToRank",
    "NoiseContrastive",
    "PerturbedFenchelYoung",
    "PerturbedOptimizer",
    "SPOPlus",
    "SolutionPool",
    "TwoStage",
    "noise_contrastive",
    "perturbed_fenchel_young",
    "perturbed_optimum",
    "perturbed_regret",
    "rank_listwise",
    "rank_pointwise",
    "spo_plus",
]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
