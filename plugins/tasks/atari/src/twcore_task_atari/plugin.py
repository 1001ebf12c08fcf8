"""Entry point of the Atari task plugin."""

from twcore.contract.hookspecs import hookimpl
from twcore_task_atari.atari_aux import AtariAuxTask


@hookimpl
def twcore_register_tasks(register):
    register("atari-aux", AtariAuxTask)
