"""A small gridworld as a gymnasium environment, with state that can be saved exactly.

The layout is fixed: walls ``#`` block moves, lava ``L`` ends the episode with reward −1, the
goal ``G`` ends it with +1, every other step costs ``step_cost``. An episode starts on a free
cell drawn from the environment's RNG (``reset(seed=…)`` fixes it) and is truncated after
``max_steps``. Observations are one-hot vectors of the agent's cell (``size²`` floats).
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

LAYOUT = (
    ".......",
    ".###...",
    "...#.L.",
    ".L.#...",
    ".....#.",
    ".#L..#.",
    "......G",
)
MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])  # up, down, left, right


class GridWorld(gym.Env):
    """The gridworld of :data:`LAYOUT`: 4 actions, one-hot observations."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, *, max_steps: int = 50, step_cost: float = 0.01) -> None:
        self.grid = np.array([list(row) for row in LAYOUT])
        self.size = self.grid.shape[0]
        self.max_steps = max_steps
        self.step_cost = step_cost
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.size**2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(MOVES))
        free = (self.grid == ".").nonzero()
        self.starts = np.stack(free, axis=1)
        self.position = self.starts[0].copy()
        self.steps = 0

    @property
    def cell(self) -> int:
        """Index of the agent's cell (row-major)."""
        return int(self.position[0] * self.size + self.position[1])

    def observation(self) -> np.ndarray:
        one_hot = np.zeros(self.size**2, dtype=np.float32)
        one_hot[self.cell] = 1.0
        return one_hot

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.position = self.starts[self.np_random.integers(len(self.starts))].copy()
        self.steps = 0
        return self.observation(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(int(action)):
            raise ValueError(f"action {action} is not one of 0-3 (up, down, left, right)")
        target = np.clip(self.position + MOVES[int(action)], 0, self.size - 1)
        if self.grid[target[0], target[1]] != "#":
            self.position = target
        self.steps += 1
        tile = self.grid[self.position[0], self.position[1]]
        reward = {"G": 1.0, "L": -1.0}.get(str(tile), -self.step_cost)
        terminated = tile in ("G", "L")
        truncated = not terminated and self.steps >= self.max_steps
        return self.observation(), reward, terminated, truncated, {}

    def get_state(self) -> dict[str, Any]:
        """Everything that determines the rest of the episode (and of later resets)."""
        return {
            "position": self.position.tolist(),
            "steps": self.steps,
            "rng": self.np_random.bit_generator.state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_state`."""
        self.position = np.array(state["position"])
        self.steps = int(state["steps"])
        self.np_random.bit_generator.state = state["rng"]
