"""Entry point of the Lookahead-DRO method plugin."""

from twcore.hookspecs import hookimpl
from twcore_method_ldro.method import LookaheadDRO


@hookimpl
def twcore_register_methods(register):
    register("ldro", LookaheadDRO)
