"""Entry point of the AdaLFL method plugin."""

from twcore.hookspecs import hookimpl
from twcore_method_adalfl.method import AdaLFL


@hookimpl
def twcore_register_methods(register):
    register("adalfl", AdaLFL)
