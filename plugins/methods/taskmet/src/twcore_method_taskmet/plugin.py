"""Entry point of the TaskMet method plugin."""

from twcore.contract.hookspecs import RegisterGrid, RegisterMethod, hookimpl


@hookimpl
def twcore_register_methods(register: RegisterMethod) -> None:
    register("taskmet", "twcore_method_taskmet.method:TaskMetMethod")


@hookimpl
def twcore_reproduction_grids(register: RegisterGrid) -> None:
    from twcore_method_taskmet.grids import cartpole_grid, reproduction_grid

    register(reproduction_grid())
    register(cartpole_grid())
