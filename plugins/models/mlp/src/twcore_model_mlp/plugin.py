"""Entry point of the ``mlp`` model plugin."""

from twcore.contract.hookspecs import hookimpl


@hookimpl
def twcore_register_models(register):
    # Fits any vector or image input: the model a run uses when it names none.
    register("mlp", "twcore_model_mlp.model:MLP", default=True)
