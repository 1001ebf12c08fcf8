"""``gridworld-aux``: Q-learning in a gridworld, with auxiliary losses of known usefulness.

The main objective is the Q-learning TD error on replayed transitions (a DQN-style agent with
a target network, :mod:`~twcore_task_rl.agent_stream`). Auxiliary objectives share the model's
trunk:
- ``reward`` (helpful): predict the reward of the transition's action from its state;
- ``random`` (harmful): predict a fixed random vector per cell (``random_scale`` × N(0, 1)),
  a target unrelated to control that competes for the trunk.
Evaluation runs greedy episodes with fixed seeds (validation and test seeds differ).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import Tensor

from twcore.batch import Batch
from twcore.config import option
from twcore.losses import squared_error_per_example
from twcore.spec import Capability, HeadSpec, ObjectiveKind, ObjectiveSpec, Role, TaskSpec
from twcore.stream import BatchStream
from twcore.task import Task
from twcore_task_rl.agent_stream import AgentSettings, AgentStream
from twcore_task_rl.gridworld import GridWorld
from twcore_task_rl.requests import check_stream_request

AUXILIARIES = ("reward", "random")
EVAL_SEEDS = {"val": 10_000, "test": 20_000}
ACTIONS = 4


@dataclass
class GridworldAuxConfig:
    auxiliaries: list[str] = option(
        default_factory=lambda: ["reward", "random"],
        help="auxiliary objectives: reward (helpful), random (harmful); [] for none",
    )
    gamma: float = option(0.95, help="discount factor")
    epsilon_final: float = option(0.05, help="exploration rate after exploration_steps")
    exploration_steps: int = option(2000, help="environment steps of linearly falling ε")
    warmup: int = option(200, help="random-action transitions before the first batch")
    capacity: int = option(10_000, help="replay buffer size")
    target_update: int = option(100, help="batches between target-network copies")
    env_steps: int = option(1, help="environment steps per training batch")
    max_steps: int = option(50, help="episode length limit (truncation)")
    step_cost: float = option(0.01, help="reward −step_cost for every non-terminal step")
    eval_episodes: int = option(20, help="greedy episodes per evaluation")
    random_size: int = option(32, help="size of the random auxiliary's target vectors")
    random_scale: float = option(5.0, help="scale of the random auxiliary's targets")

    def __post_init__(self) -> None:
        unknown = [a for a in self.auxiliaries if a not in AUXILIARIES]
        if unknown or len(set(self.auxiliaries)) != len(self.auxiliaries):
            raise ValueError(
                f"task.auxiliaries={list(self.auxiliaries)} must be distinct names from "
                f"{', '.join(AUXILIARIES)}"
            )
        if not 0 < self.gamma < 1:
            raise ValueError(f"task.gamma={self.gamma} must be in (0, 1)")
        for key in ("warmup", "capacity", "target_update", "env_steps", "max_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"task.{key}={getattr(self, key)} must be >= 1")
        if self.eval_episodes < 10:
            raise ValueError(f"task.eval_episodes={self.eval_episodes} must be >= 10")


class GridworldAuxTask(Task):
    """Q-learning on :class:`GridWorld` with optional auxiliary objectives (module docstring)."""

    Config = GridworldAuxConfig

    def __init__(self, config: GridworldAuxConfig) -> None:
        super().__init__(config)
        cells = GridWorld().size ** 2
        generator = torch.Generator().manual_seed(0)
        self.random_table = config.random_scale * torch.randn(
            cells, config.random_size, generator=generator
        )

    @cached_property
    def spec(self) -> TaskSpec:  # type: ignore[override]
        auxiliaries = self.config.auxiliaries
        heads = [HeadSpec("q", ACTIONS)]
        objectives = [ObjectiveSpec("td", "q", ObjectiveKind.CUSTOM, Role.MAIN)]
        if "reward" in auxiliaries:
            heads.append(HeadSpec("reward", ACTIONS))
            objectives.append(
                ObjectiveSpec("reward", "reward", ObjectiveKind.CUSTOM, Role.AUXILIARY)
            )
        if "random" in auxiliaries:
            heads.append(HeadSpec("random", self.config.random_size))
            objectives.append(
                ObjectiveSpec("random", "random", ObjectiveKind.REGRESSION, Role.AUXILIARY)
            )
        return TaskSpec(
            input_shape=(GridWorld().size ** 2,),
            heads=tuple(heads),
            objectives=tuple(objectives),
            capabilities=frozenset({Capability.ENVIRONMENT}),
            primary_metric="return",
            primary_mode="max",
            summary_metrics=("return", "success", "length"),
        )

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """Evaluation episodes with validation seeds (every ``eval_every`` steps) and with test
        seeds. There is no validation *stream*: methods that meta-learn on validation batches
        (αVIL, TaskMet) do not fit this task."""
        return ("val", "test")

    def _environment(self) -> GridWorld:
        return GridWorld(max_steps=self.config.max_steps, step_cost=self.config.step_cost)

    def stream(
        self,
        split: str,
        batch_size: int,
        *,
        seed: int,
        device: torch.device,
        model: torch.nn.Module | None = None,
    ) -> BatchStream:
        check_stream_request("gridworld-aux", split, model)
        config = self.config
        settings = AgentSettings(
            gamma=config.gamma,
            epsilon_final=config.epsilon_final,
            exploration_steps=config.exploration_steps,
            warmup=config.warmup,
            capacity=config.capacity,
            target_update=config.target_update,
            env_steps=config.env_steps,
        )
        table = self.random_table.to(device)
        return AgentStream(
            self._environment(),
            model,
            q_head="q",
            settings=settings,
            batch_size=batch_size,
            seed=seed,
            device=device,
            extra_targets=lambda sample: {
                "reward": sample["reward"],
                "random": sample["observation"] @ table,
            },
        )

    def objective_losses(self, outputs: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        action = batch.context["action"].unsqueeze(1)
        losses = {
            "td": (outputs["q"].gather(1, action).squeeze(1) - batch.targets["td"]) ** 2,
        }
        if "reward" in self.config.auxiliaries:
            predicted = outputs["reward"].gather(1, action).squeeze(1)
            losses["reward"] = (predicted - batch.targets["reward"]) ** 2
        if "random" in self.config.auxiliaries:
            losses["random"] = squared_error_per_example(outputs["random"], batch.targets["random"])
        return losses

    @torch.no_grad()
    def evaluate(
        self, model: torch.nn.Module, split: str, *, device: torch.device, batch_size: int
    ) -> dict[str, float]:
        """Greedy episodes with this split's seeds: mean return, success rate, mean length."""
        if split not in EVAL_SEEDS:
            raise ValueError(f"gridworld-aux evaluates 'val' or 'test', not '{split}'")
        was_training = model.training
        model.eval()
        returns, successes, lengths = [], [], []
        try:
            for episode in range(self.config.eval_episodes):
                total, length, success = self._episode(model, EVAL_SEEDS[split] + episode, device)
                returns.append(total)
                successes.append(float(success))
                lengths.append(float(length))
        finally:
            model.train(was_training)
        count = len(returns)
        return {
            "return": sum(returns) / count,
            "success": sum(successes) / count,
            "length": sum(lengths) / count,
        }

    def _episode(self, model: torch.nn.Module, seed: int, device: torch.device) -> tuple:
        env = self._environment()
        observation, _ = env.reset(seed=seed)
        total, length = 0.0, 0
        while True:
            values = model(torch.as_tensor(observation).unsqueeze(0).to(device))["q"]
            observation, reward, terminated, truncated, _ = env.step(int(values.argmax()))
            total += reward
            length += 1
            if terminated or truncated:
                return total, length, terminated and reward > 0

    def state_dict(self) -> dict[str, Any]:
        return {}
