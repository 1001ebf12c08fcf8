"""Entry point of the ``linear`` model plugin."""

from twcore.contract.hookspecs import hookimpl


@hookimpl
def twcore_register_models(register):
    register("linear", "twcore_model_linear.model:Linear")
