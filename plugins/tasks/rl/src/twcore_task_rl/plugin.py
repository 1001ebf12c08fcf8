"""Entry point of the reinforcement-learning task plugin."""

from twcore.contract.hookspecs import hookimpl


@hookimpl
def twcore_register_tasks(register):
    register("gridworld-aux", "twcore_task_rl.gridworld_aux:GridworldAuxTask")
    register("cartpole-distractors", "twcore_task_rl.cartpole_model:CartpoleDistractorsTask")


@hookimpl
def twcore_reproduction_grids(register):
    from twcore_task_rl.grids import reproduction_grid

    register(reproduction_grid())
