"""Entry point of the predict-then-optimise baselines."""

from twcore.contract.hookspecs import RegisterMethod, hookimpl
from twcore_method_dfl.methods import DecisionFocused, TwoStage


@hookimpl
def twcore_register_methods(register: RegisterMethod) -> None:
    register("two-stage", TwoStage)
    register("dfl", DecisionFocused)
