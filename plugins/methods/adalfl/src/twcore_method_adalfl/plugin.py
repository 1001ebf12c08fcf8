"""Entry point of the AdaLFL method plugin."""

from twcore.contract.hookspecs import RegisterGrid, RegisterMethod, hookimpl
from twcore_method_adalfl.grids import reproduction_grid
from twcore_method_adalfl.method import AdaLFLMethod


@hookimpl
def twcore_register_methods(register: RegisterMethod) -> None:
    register("adalfl", AdaLFLMethod)


@hookimpl
def twcore_reproduction_grids(register: RegisterGrid) -> None:
    register(reproduction_grid())
