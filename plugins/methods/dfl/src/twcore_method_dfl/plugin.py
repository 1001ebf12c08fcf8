"""Entry point of the predict-then-optimise methods."""

from twcore.contract.hookspecs import RegisterGrid, RegisterMethod, hookimpl
from twcore_method_dfl.grids import reproduction_grids
from twcore_method_dfl.methods import (
    DecisionFocused,
    LearningToRank,
    NoiseContrastive,
    PerturbedFenchelYoung,
    PerturbedOptimizer,
    SPOPlus,
    TwoStage,
)


@hookimpl
def twcore_register_methods(register: RegisterMethod) -> None:
    register("two-stage", TwoStage)
    register("dfl", DecisionFocused)
    register("spo-plus", SPOPlus)
    register("pfyl", PerturbedFenchelYoung)
    register("dpo", PerturbedOptimizer)
    register("nce", NoiseContrastive)
    register("ltr", LearningToRank)


@hookimpl
def twcore_reproduction_grids(register: RegisterGrid) -> None:
    for grid in reproduction_grids():
        register(grid)
