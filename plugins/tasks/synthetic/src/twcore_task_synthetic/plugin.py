"""Entry point of the synthetic task plugins."""

from twcore.contract.hookspecs import hookimpl


@hookimpl
def twcore_register_tasks(register):
    # Small and fast, with every objective kind and role: the task a run uses when it names none.
    register("toy-multitask", "twcore_task_synthetic.toy_multitask:ToyMultitask", default=True)
    register("ldro-points", "twcore_task_synthetic.ldro_points:LdroPoints")
