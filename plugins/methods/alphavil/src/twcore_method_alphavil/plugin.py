"""Entry point of the alphaVIL method plugin."""

from twcore.contract.hookspecs import RegisterGrid, RegisterMethod, hookimpl
from twcore_method_alphavil.grids import reproduction_grid
from twcore_method_alphavil.method import AlphaVILMethod


@hookimpl
def twcore_register_methods(register: RegisterMethod) -> None:
    register("alphavil", AlphaVILMethod)


@hookimpl
def twcore_reproduction_grids(register: RegisterGrid) -> None:
    register(reproduction_grid())
