"""Entry point of the TaskMet method plugin."""

from twcore.contract.hookspecs import hookimpl
from twcore_method_taskmet.grids import reproduction_grid
from twcore_method_taskmet.method import TaskMetMethod


@hookimpl
def twcore_register_methods(register):
    register("taskmet", TaskMetMethod)


@hookimpl
def twcore_reproduction_grids(register):
    register(reproduction_grid())
