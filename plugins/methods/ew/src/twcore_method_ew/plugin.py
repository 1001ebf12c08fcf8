"""Entry point of the ``ew`` method plugin."""

from twcore.contract.hookspecs import RegisterMethod, hookimpl


@hookimpl
def twcore_register_methods(register: RegisterMethod) -> None:
    # The baseline every comparison starts from: the method a run uses when it names none.
    register("ew", "twcore_method_ew.method:EqualWeightingMethod", default=True)
