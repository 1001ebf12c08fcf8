"""Entry point of the AdaLFL method plugin."""

from twcore.contract.hookspecs import RegisterGrid, RegisterMethod, hookimpl


@hookimpl
def twcore_register_methods(register: RegisterMethod) -> None:
    register("adalfl", "twcore_method_adalfl.method:AdaLFLMethod")


@hookimpl
def twcore_reproduction_grids(register: RegisterGrid) -> None:
    from twcore_method_adalfl.grids import reproduction_grid

    register(reproduction_grid())
