"""Environment speed, for the plugins' benchmark scripts."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np


def random_steps_per_second(env: gym.Env, steps: int, seed: int = 0) -> float:
    """Steps per second of `env` under uniformly random actions (reset when an episode ends)."""
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    began = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - began)
