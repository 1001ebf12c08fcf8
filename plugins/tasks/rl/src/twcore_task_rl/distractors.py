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


def environment_state(env: gym.Env) -> dict[str, Any]:
    """Everything that determines the rest of a (distractor-wrapped) CartPole run: the physical
    state, the episode's step count, and the generators of resets and distractors."""
    base = env.unwrapped
    limit = _wrapper(env, gym.wrappers.TimeLimit)
    noise = _wrapper(env, DistractorObservation)
    return {
        "state": None if base.state is None else [float(v) for v in base.state],
        "steps_beyond_terminated": base.steps_beyond_terminated,
        "rng": base.np_random.bit_generator.state,
        "elapsed": None if limit is None else limit._elapsed_steps,
        "noise": None if noise is None else noise.noise.bit_generator.state,
    }


def set_environment_state(env: gym.Env, state: dict[str, Any]) -> None:
    """Restore :func:`environment_state` into an environment made the same way."""
    base = env.unwrapped
    base.state = None if state["state"] is None else np.array(state["state"], dtype=np.float64)
    base.steps_beyond_terminated = state["steps_beyond_terminated"]
    base.np_random.bit_generator.state = state["rng"]
    limit = _wrapper(env, gym.wrappers.TimeLimit)
    if limit is not None:
        limit._elapsed_steps = state["elapsed"]
    noise = _wrapper(env, DistractorObservation)
    if noise is not None and state["noise"] is not None:
        noise.noise.bit_generator.state = state["noise"]


def _wrapper(env: gym.Env, kind: type) -> Any:
    while True:
        if isinstance(env, kind):
            return env
        if not hasattr(env, "env"):
            return None
        env = env.env
