"""Entry point of the Lookahead-DRO method plugin."""

from twcore.contract.hookspecs import RegisterGrid, RegisterMethod, hookimpl


@hookimpl
def twcore_register_methods(register: RegisterMethod) -> None:
    register("ldro", "twcore_method_ldro.method:LookaheadDROMethod")


@hookimpl
def twcore_reproduction_grids(register: RegisterGrid) -> None:
    from twcore_method_ldro.grids import reproduction_grids

    for grid in reproduction_grids():
        register(grid)
