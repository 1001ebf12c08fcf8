"""Entry point of the ``cnn`` model plugin."""

from twcore.contract.hookspecs import hookimpl
from twcore_model_cnn.model import CNN


@hookimpl
def twcore_register_models(register):
    register("cnn", CNN)
