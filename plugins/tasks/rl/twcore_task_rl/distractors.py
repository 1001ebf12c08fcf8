"""Observations with appended distracting dimensions (TaskMet's CartPole setting)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class DistractorObservation(gym.ObservationWrapper):
    """Append `count` i.i.d. N(0, 1) dimensions to every observation.

    The distractors come from the wrapper's own generator, seeded from ``reset(seed=…)``, so they
    carry no information about the state and do not change the environment's own randomness:
    the true dimensions of an episode are the same for every `count`.
    """

    def __init__(self, env: gym.Env, count: int) -> None:
        super().__init__(env)
        if count < 0:
            raise ValueError(f"distractors={count} must be >= 0")
        self.count = count
        low = np.concatenate([env.observation_space.low, np.full(count, -np.inf)])
        high = np.concatenate([env.observation_space.high, np.full(count, np.inf)])
        self.observation_space = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32))
        self.noise = np.random.default_rng()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self.noise = np.random.default_rng([seed, 7_919])
        return super().reset(seed=seed, options=options)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        noise = self.noise.standard_normal(self.count).astype(np.float32)
        return np.concatenate([np.asarray(observation, dtype=np.float32), noise])


def cartpole_with_distractors(count: int, **kwargs: Any) -> gym.Env:
    """``CartPole-v1`` with `count` distracting observation dimensions appended."""
    return DistractorObservation(gym.make("CartPole-v1", **kwargs), count)
