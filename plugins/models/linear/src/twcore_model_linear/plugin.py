"""Entry point of the ``linear`` model plugin."""

from twcore.contract.hookspecs import hookimpl
from twcore_model_linear.model import Linear


@hookimpl
def twcore_register_models(register):
    register("linear", Linear)
