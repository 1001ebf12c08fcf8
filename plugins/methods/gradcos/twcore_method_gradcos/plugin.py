"""Entry point of the GradCos method plugin."""

from twcore.hookspecs import hookimpl
from twcore_method_gradcos.method import GradCos


@hookimpl
def twcore_register_methods(register):
    register("gradcos", GradCos)
