"""Entry point of the ``ew`` method plugin."""

from twcore.hookspecs import hookimpl
from twcore_method_ew.method import EqualWeighting


@hookimpl
def twcore_register_methods(register):
    register("ew", EqualWeighting)
