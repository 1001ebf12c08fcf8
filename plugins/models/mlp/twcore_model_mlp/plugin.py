"""Entry point of the ``mlp`` model plugin."""

from twcore.hookspecs import hookimpl
from twcore_model_mlp.model import MLP


@hookimpl
def twcore_register_models(register):
    register("mlp", MLP)
