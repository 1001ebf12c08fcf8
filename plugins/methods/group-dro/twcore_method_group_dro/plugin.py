"""Entry point of the group DRO method plugin."""

from twcore.hookspecs import hookimpl
from twcore_method_group_dro.method import GroupDRO


@hookimpl
def twcore_register_methods(register):
    register("group-dro", GroupDRO)
