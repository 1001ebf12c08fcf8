"""Entry point of the scikit-learn task plugins."""

from twcore.contract.hookspecs import hookimpl


@hookimpl
def twcore_register_tasks(register):
    register("digits", "twcore_task_sklearn.digits:Digits")
    register("diabetes", "twcore_task_sklearn.diabetes:Diabetes")
