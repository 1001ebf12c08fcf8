"""Entry point of the TaskMet method plugin."""

from twcore.hookspecs import hookimpl
from twcore_method_taskmet.method import TaskMet


@hookimpl
def twcore_register_methods(register):
    register("taskmet", TaskMet)
