"""Entry point of the group DRO method plugin."""

from twcore.contract.hookspecs import hookimpl
from twcore_method_group_dro.method import GroupDROMethod


@hookimpl
def twcore_register_methods(register):
    register("group-dro", GroupDROMethod)
