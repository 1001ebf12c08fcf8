"""Reinforcement-learning tasks on gymnasium environments."""

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
