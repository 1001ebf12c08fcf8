"""Entry point of the Lookahead-DRO method plugin."""

from twcore.contract.hookspecs import hookimpl
from twcore_method_ldro.grids import reproduction_grid
from twcore_method_ldro.method import LookaheadDROMethod


@hookimpl
def twcore_register_methods(register):
    register("ldro", LookaheadDROMethod)


@hookimpl
def twcore_reproduction_grids(register):
    register(reproduction_grid())
