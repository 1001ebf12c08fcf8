"""Reinforcement-learning tasks on gymnasium environments."""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports

if TYPE_CHECKING:
    from twcore_task_rl.bellman import q_learning_targets, soft_q_targets
    from twcore_task_rl.distractors import DistractorObservation, cartpole_with_distractors
    from twcore_task_rl.gridworld import GridWorld
    from twcore_task_rl.gridworld_aux import GridworldAuxTask
    from twcore_task_rl.replay import ReplayBuffer

__all__ = [
    "DistractorObservation",
    "GridWorld",
    "GridworldAuxTask",
    "ReplayBuffer",
    "cartpole_with_distractors",
    "q_learning_targets",
    "soft_q_targets",
]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
