"""Entry point of the scikit-learn task plugins."""

from twcore.contract.hookspecs import hookimpl
from twcore_task_sklearn.diabetes import Diabetes
from twcore_task_sklearn.digits import Digits


@hookimpl
def twcore_register_tasks(register):
    register("digits", Digits)
    register("diabetes", Diabetes)
