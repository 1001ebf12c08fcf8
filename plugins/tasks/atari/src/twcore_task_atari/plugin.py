"""Entry point of the Atari task plugin."""

from twcore.contract.hookspecs import hookimpl


@hookimpl
def twcore_register_tasks(register):
    register("atari-aux", "twcore_task_atari.atari_aux:AtariAuxTask")
