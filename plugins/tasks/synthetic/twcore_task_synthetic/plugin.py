"""Entry point of the synthetic task plugins."""

from twcore.hookspecs import hookimpl
from twcore_task_synthetic.ldro_points import LdroPoints
from twcore_task_synthetic.toy_multitask import ToyMultitask


@hookimpl
def twcore_register_tasks(register):
    register("toy-multitask", ToyMultitask)
    register("ldro-points", LdroPoints)
