"""``atari-aux``: DQN-style Q-learning on an Atari game, with auxiliary losses of known usefulness.

The same task as ``gridworld-aux`` (:mod:`twcore_task_rl.auxiliary_q`) on
:class:`~twcore_task_atari.frames.AtariFrames`: the main objective is the TD error with clipped
rewards; ``reward`` (helpful) predicts the transition's clipped reward; ``random`` (harmful)
predicts ``random_scale`` × sign(Rᵀ(x − ½)), a fixed random hyperplane code of the frames x ∈
[0, 1] (R ~ N(0, 1), seeded), unrelated to control. Evaluation plays ε-greedy episodes
(``eval_epsilon``, as DQN evaluates) with the game's unclipped score.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import torch
from torch import Tensor
from twcore_task_rl.auxiliary_q import AuxiliaryQConfig, AuxiliaryQTask

from twcore.contract.options import option
from twcore_task_atari.frames import AtariFrames, bundled_games


@dataclass
class AtariAuxConfig(AuxiliaryQConfig):
    # A field redeclared to change its default is declared anew, so it repeats the constraint of
    # AuxiliaryQConfig's field; only eval_episodes relaxes it (>= 1 here, >= 10 there).
    game: str = option(
        "breakout",
        choices=bundled_games(),
        help="an ALE game bundled with ale-py (snake_case id)",
    )
    frame_size: int = option(42, ge=1, help="frames are downsampled to frame_size × frame_size")
    frame_stack: int = option(4, ge=1, help="frames per observation")
    frameskip: int = option(4, ge=1, help="emulator frames per action")
    sticky_actions: float = option(
        0.25, ge=0, le=1, help="probability that the previous action repeats"
    )
    max_steps: int = option(1000, ge=1, help="actions per episode before truncation")
    eval_epsilon: float = option(0.05, ge=0, le=1, help="exploration rate of evaluation episodes")
    gamma: float = option(0.99, gt=0, lt=1, help="discount factor")
    epsilon_final: float = option(0.1, help="exploration rate after exploration_steps")
    exploration_steps: int = option(20_000, help="environment steps of linearly falling ε")
    warmup: int = option(1000, ge=1, help="random-action transitions before the first batch")
    capacity: int = option(20_000, ge=1, help="replay buffer size (frames are stored as bytes)")
    target_update: int = option(500, ge=1, help="batches between target-network copies")
    eval_episodes: int = option(10, ge=1, help="evaluation episodes")
    random_size: int = option(16, ge=1, help="size of the random auxiliary's target vectors")
    random_scale: float = option(1.0, help="scale of the random auxiliary's targets")


class AtariAuxTask(AuxiliaryQTask):
    """Q-learning on an Atari game with optional auxiliary objectives (module docstring)."""

    Config = AtariAuxConfig
    name = "atari-aux"
    run_defaults: ClassVar[dict[str, Any]] = {"batch_size": 32}

    def __init__(self, config: AtariAuxConfig) -> None:
        super().__init__(config)
        self.eval_epsilon = config.eval_epsilon
        features = config.frame_stack * config.frame_size**2
        generator = torch.Generator().manual_seed(0)
        self.projection = torch.randn(features, config.random_size, generator=generator)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.config.frame_stack, self.config.frame_size, self.config.frame_size)

    @cached_property
    def actions(self) -> int:  # type: ignore[override]
        """The game's minimal action set, read once from a throwaway emulator."""
        env = self.make_environment(training=False)
        try:
            return int(env.action_space.n)
        finally:
            env.close()

    def make_environment(self, *, training: bool) -> AtariFrames:
        config = self.config
        return AtariFrames(
            config.game,
            frame_size=config.frame_size,
            frame_stack=config.frame_stack,
            frameskip=config.frameskip,
            repeat_action_probability=config.sticky_actions,
            max_steps=config.max_steps,
            clip_rewards=training,
        )

    def random_targets(self, observations: Tensor) -> Tensor:
        """``random_scale`` × sign(Rᵀ(x − ½)) of frames x ∈ [0, 1] [B, k, S, S]."""
        codes = (observations.flatten(1) - 0.5) @ self.projection.to(observations.device)
        return self.config.random_scale * torch.sign(codes)
