"""Entry point of the GradCos method plugin."""

from twcore.contract.hookspecs import RegisterGrid, RegisterMethod, hookimpl
from twcore_method_gradcos.grids import reproduction_grid
from twcore_method_gradcos.method import GradCosMethod


@hookimpl
def twcore_register_methods(register: RegisterMethod) -> None:
    register("gradcos", GradCosMethod)


@hookimpl
def twcore_reproduction_grids(register: RegisterGrid) -> None:
    register(reproduction_grid())
