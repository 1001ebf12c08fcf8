"""Entry point of the reinforcement-learning task plugin."""

from twcore.contract.hookspecs import hookimpl
from twcore_task_rl.cartpole_model import CartpoleDistractorsTask
from twcore_task_rl.grids import reproduction_grid
from twcore_task_rl.gridworld_aux import GridworldAuxTask


@hookimpl
def twcore_register_tasks(register):
    register("gridworld-aux", GridworldAuxTask)
    register("cartpole-distractors", CartpoleDistractorsTask)


@hookimpl
def twcore_reproduction_grids(register):
    register(reproduction_grid())
