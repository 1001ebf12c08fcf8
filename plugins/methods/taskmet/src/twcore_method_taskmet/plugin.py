"""Entry point of the TaskMet method plugin."""

from twcore.contract.hookspecs import RegisterGrid, RegisterMethod, hookimpl
from twcore_method_taskmet.grids import reproduction_grid
from twcore_method_taskmet.method import TaskMetMethod


@hookimpl
def twcore_register_methods(register: RegisterMethod) -> None:
    register("taskmet", TaskMetMethod)


@hookimpl
def twcore_reproduction_grids(register: RegisterGrid) -> None:
    register(reproduction_grid())
