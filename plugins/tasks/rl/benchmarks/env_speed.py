"""Environment steps per second: the gridworld and CartPole with distractors, single and vectorised.

    python3 plugins/tasks/rl/benchmarks/env_speed.py [--steps 20000]

Random actions, no learning: the cost of the environments themselves (and of the distractor
wrapper). The vectorised rows step 8 copies at once through ``gymnasium.vector.SyncVectorEnv``.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
from twcore_task_rl import GridWorld, cartpole_with_distractors
from twcore_task_rl.speed import random_steps_per_second

ENVIRONMENTS = {
    "gridworld": GridWorld,
    "CartPole, d = 0": lambda: cartpole_with_distractors(0),
    "CartPole, d = 32": lambda: cartpole_with_distractors(32),
    "CartPole, d = 512": lambda: cartpole_with_distractors(512),
}


def single(make, steps: int) -> float:
    return random_steps_per_second(make(), steps)


def vectorised(make, steps: int, copies: int = 8) -> float:
    envs = gym.vector.SyncVectorEnv([make for _ in range(copies)])
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    began = time.perf_counter()
    for _ in range(steps // copies):
        envs.step(rng.integers(envs.single_action_space.n, size=copies))
    return (steps // copies) * copies / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    args = parser.parse_args()
    print("| environment | steps/s, one env | steps/s, 8 vectorised |")
    print("|---|---|---|")
    for name, make in ENVIRONMENTS.items():
        print(f"| {name} | {single(make, args.steps):,.0f} | {vectorised(make, args.steps):,.0f} |")


if __name__ == "__main__":
    main()
