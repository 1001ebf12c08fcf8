"""Entry point of the GradCos method plugin."""

from twcore.contract.hookspecs import hookimpl
from twcore_method_gradcos.grids import reproduction_grid
from twcore_method_gradcos.method import GradCosMethod


@hookimpl
def twcore_register_methods(register):
    register("gradcos", GradCosMethod)


@hookimpl
def twcore_reproduction_grids(register):
    register(reproduction_grid())
