"""Entry point of the GradCos method plugin."""

from twcore.contract.hookspecs import RegisterGrid, RegisterMethod, hookimpl


@hookimpl
def twcore_register_methods(register: RegisterMethod) -> None:
    register("gradcos", "twcore_method_gradcos.method:GradCosMethod")


@hookimpl
def twcore_reproduction_grids(register: RegisterGrid) -> None:
    from twcore_method_gradcos.grids import reproduction_grid

    register(reproduction_grid())
