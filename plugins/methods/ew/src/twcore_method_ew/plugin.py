"""Entry point of the ``ew`` method plugin."""

from twcore.contract.hookspecs import RegisterMethod, hookimpl
from twcore_method_ew.method import EqualWeightingMethod


@hookimpl
def twcore_register_methods(register: RegisterMethod) -> None:
    # The baseline every comparison starts from: the method a run uses when it names none.
    register("ew", EqualWeightingMethod, default=True)
