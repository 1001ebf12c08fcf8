"""Entry point of the ``cnn`` model plugin."""

from twcore.contract.hookspecs import hookimpl


@hookimpl
def twcore_register_models(register):
    register("cnn", "twcore_model_cnn.model:CNN")
