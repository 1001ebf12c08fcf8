"""Entry point of the group DRO method plugin."""

from twcore.contract.hookspecs import RegisterMethod, hookimpl


@hookimpl
def twcore_register_methods(register: RegisterMethod) -> None:
    register("group-dro", "twcore_method_group_dro.method:GroupDROMethod")
