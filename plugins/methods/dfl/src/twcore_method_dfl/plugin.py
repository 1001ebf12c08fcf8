"""Entry point of the predict-then-optimise methods."""

from twcore.contract.hookspecs import RegisterGrid, RegisterMethod, hookimpl


@hookimpl
def twcore_register_methods(register: RegisterMethod) -> None:
    register("two-stage", "twcore_method_dfl.methods:TwoStage")
    register("dfl", "twcore_method_dfl.methods:DecisionFocused")
    register("spo-plus", "twcore_method_dfl.methods:SPOPlus")
    register("pfyl", "twcore_method_dfl.methods:PerturbedFenchelYoung")
    register("dpo", "twcore_method_dfl.methods:PerturbedOptimizer")
    register("nce", "twcore_method_dfl.methods:NoiseContrastive")
    register("ltr", "twcore_method_dfl.methods:LearningToRank")


@hookimpl
def twcore_reproduction_grids(register: RegisterGrid) -> None:
    from twcore_method_dfl.grids import reproduction_grids

    for grid in reproduction_grids():
        register(grid)
