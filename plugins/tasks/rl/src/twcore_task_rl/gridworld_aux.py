"""``gridworld-aux``: Q-learning in a gridworld, with auxiliary losses of known usefulness.

The main objective is the Q-learning TD error on replayed transitions; the auxiliaries
(:mod:`~twcore_task_rl.auxiliary_q`) are ``reward`` (helpful: predict the transition's reward)
and ``random`` (harmful: a fixed random vector per cell, ``random_scale`` × N(0, 1)).
Evaluation runs greedy episodes with fixed seeds (validation and test seeds differ).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from twcore.contract.metrics import Direction
from twcore.contract.options import option
from twcore_task_rl.auxiliary_q import EVAL_SEEDS, AuxiliaryQConfig, AuxiliaryQTask
from twcore_task_rl.gridworld import GridWorld

__all__ = ["EVAL_SEEDS", "GridworldAuxConfig", "GridworldAuxTask"]


@dataclass
class GridworldAuxConfig(AuxiliaryQConfig):
    max_steps: int = option(50, ge=1, help="episode length limit (truncation)")
    step_cost: float = option(0.01, help="reward −step_cost for every non-terminal step")


class GridworldAuxTask(AuxiliaryQTask):
    """Q-learning on :class:`GridWorld` with optional auxiliary objectives (module docstring)."""

    Config = GridworldAuxConfig
    name = "gridworld-aux"
    summary_metrics = ("return", "success", "length")
    episode_directions: ClassVar[dict[str, Direction]] = {
        **AuxiliaryQTask.episode_directions,
        "success": "max",
    }

    def __init__(self, config: GridworldAuxConfig) -> None:
        super().__init__(config)
        generator = torch.Generator().manual_seed(0)
        self.random_table = config.random_scale * torch.randn(
            GridWorld().size ** 2, config.random_size, generator=generator
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (GridWorld().size ** 2,)

    @property
    def actions(self) -> int:
        return int(GridWorld().action_space.n)

    def make_environment(self, *, training: bool) -> GridWorld:
        return GridWorld(max_steps=self.config.max_steps, step_cost=self.config.step_cost)

    def random_targets(self, observations: Tensor) -> Tensor:
        """The random vector of each observation's cell (observations are one-hot)."""
        return observations @ self.random_table.to(observations.device)

    def episode_metrics(self, total: float, length: int, last_reward: float, ended: bool) -> dict:
        """Return, length, and success: the episode ended on the goal."""
        success = float(ended and last_reward > 0)
        return {"return": total, "success": success, "length": float(length)}
