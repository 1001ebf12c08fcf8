"""Entry point of the Lookahead-DRO method plugin."""

from twcore.contract.hookspecs import RegisterGrid, RegisterMethod, hookimpl
from twcore_method_ldro.grids import reproduction_grid
from twcore_method_ldro.method import LookaheadDROMethod


@hookimpl
def twcore_register_methods(register: RegisterMethod) -> None:
    register("ldro", LookaheadDROMethod)


@hookimpl
def twcore_reproduction_grids(register: RegisterGrid) -> None:
    register(reproduction_grid())
