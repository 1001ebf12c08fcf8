"""The training stream of a value-based RL task: act in the environment, store, replay.

Each batch is preceded by ``env_steps`` environment steps of an ε-greedy policy on the model's
Q head (ε falls linearly from 1 to ``epsilon_final`` over ``exploration_steps``). The batch is
drawn uniformly from the replay buffer and carries its Q-learning targets, computed with a
target network that copies the model every ``target_update`` batches. Everything (environment,
replay, target network, RNG, counters) is in :meth:`state_dict`, so a resumed run sees exactly
the batches it would have seen.

Observations are stored as the environment gives them; ``uint8`` ones (image frames) are stored
as bytes and reach the model as floats in [0, 1] (:func:`model_input`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from twcore.autodiff.data_parallel import process_local
from twcore.contract.batch import Batch
from twcore_task_rl.bellman import q_learning_targets
from twcore_task_rl.replay import ReplayBuffer


@dataclass
class AgentSettings:
    """How the agent explores and learns (the task's options)."""

    gamma: float
    epsilon_final: float
    exploration_steps: int
    warmup: int
    capacity: int
    target_update: int
    env_steps: int


ExtraTargets = Callable[[dict[str, Tensor]], dict[str, Tensor]]


def model_input(observations: Tensor) -> Tensor:
    """What the model sees of stored observations: bytes (image frames) scaled to [0, 1]
    floats, anything else as float."""
    if observations.dtype == torch.uint8:
        return observations.float().div_(255.0)
    return observations.float()


class AgentStream:
    """An endless stream of replay batches for the model's Q head (see the module docstring).

    Args:
        env: the environment (it must offer ``get_state``/``set_state``, as :class:`GridWorld`).
        model: the model being trained; its ``q_head`` output gives the action values.
        extra_targets: per-batch targets of auxiliary objectives from the sampled transitions
            (their observations already as model inputs).
    """

    def __init__(
        self,
        env: gym.Env,
        model: nn.Module,
        *,
        q_head: str,
        settings: AgentSettings,
        batch_size: int,
        seed: int,
        device: torch.device,
        extra_targets: ExtraTargets,
    ) -> None:
        self.env = env
        self.model = model
        self.target = copy.deepcopy(model).requires_grad_(False)
        self.q_head = q_head
        self.settings = settings
        self.batch_size = batch_size
        self.device = device
        self.extra_targets = extra_targets
        self.generator = torch.Generator().manual_seed(seed)
        space = env.observation_space
        stored = torch.uint8 if np.dtype(space.dtype) == np.uint8 else torch.float32
        self.replay = ReplayBuffer(settings.capacity, tuple(space.shape), stored)
        observation, _ = env.reset(seed=seed)
        self.observation = torch.as_tensor(observation)
        self.env_steps = 0
        self.batches = 0
        self.episode_return = 0.0
        self.completed_epochs = 0

    def __iter__(self) -> AgentStream:
        return self

    def epsilon(self) -> float:
        """The exploration rate at the current environment step."""
        fraction = min(1.0, self.env_steps / max(1, self.settings.exploration_steps))
        return 1.0 + fraction * (self.settings.epsilon_final - 1.0)

    def __next__(self) -> Batch:
        while len(self.replay) < max(self.settings.warmup, 1):
            self._act()
        for _ in range(self.settings.env_steps):
            self._act()
        sample = self.replay.sample(self.batch_size, self.generator)
        sample = {name: value.to(self.device) for name, value in sample.items()}
        for name in ("observation", "next_observation"):
            sample[name] = model_input(sample[name])
        with torch.no_grad():
            next_q = self.target(sample["next_observation"])[self.q_head]
        targets = {
            "td": q_learning_targets(
                sample["reward"], sample["terminated"], next_q, self.settings.gamma
            ),
            **self.extra_targets(sample),
        }
        self.batches += 1
        if self.batches % self.settings.target_update == 0:
            self.target.load_state_dict(self.model.state_dict())
        return Batch(
            inputs=sample["observation"],
            targets=targets,
            context={
                "action": sample["action"],
                "reward": sample["reward"],
                "next_observation": sample["next_observation"],
                "terminated": sample["terminated"],
            },
        )

    def _act(self) -> None:
        explore = torch.rand((), generator=self.generator).item() < self.epsilon()
        if explore:
            action = int(torch.randint(self.env.action_space.n, (), generator=self.generator))
        else:
            # Every process of a data-parallel run acts alike, on its own (no collective).
            with torch.no_grad(), process_local():
                observation = model_input(self.observation.unsqueeze(0).to(self.device))
                values = self.model(observation)[self.q_head]
            action = int(values.argmax(dim=1).item())
        next_observation, reward, terminated, truncated, _ = self.env.step(action)
        next_tensor = torch.as_tensor(next_observation)
        self.replay.add(self.observation, action, reward, next_tensor, terminated)
        self.env_steps += 1
        self.episode_return += reward
        if terminated or truncated:
            next_observation, _ = self.env.reset()
            next_tensor = torch.as_tensor(next_observation)
            self.episode_return = 0.0
        self.observation = next_tensor

    def state_dict(self) -> dict[str, Any]:
        return {
            "env": self.env.get_state(),
            "observation": self.observation.clone(),
            "replay": self.replay.state_dict(),
            "target": self.target.state_dict(),
            "generator": self.generator.get_state(),
            "env_steps": self.env_steps,
            "batches": self.batches,
            "episode_return": self.episode_return,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env.set_state(state["env"])
        self.observation = state["observation"].clone()
        self.replay.load_state_dict(state["replay"])
        self.target.load_state_dict(state["target"])
        self.generator.set_state(state["generator"])
        self.env_steps = int(state["env_steps"])
        self.batches = int(state["batches"])
        self.episode_return = float(state["episode_return"])
