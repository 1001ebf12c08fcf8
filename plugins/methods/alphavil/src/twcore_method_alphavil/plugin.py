"""Entry point of the alphaVIL method plugin."""

from twcore.contract.hookspecs import RegisterGrid, RegisterMethod, hookimpl


@hookimpl
def twcore_register_methods(register: RegisterMethod) -> None:
    register("alphavil", "twcore_method_alphavil.method:AlphaVILMethod")


@hookimpl
def twcore_reproduction_grids(register: RegisterGrid) -> None:
    from twcore_method_alphavil.grids import reproduction_grid

    register(reproduction_grid())
