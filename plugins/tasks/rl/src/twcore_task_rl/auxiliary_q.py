"""Q-learning tasks with auxiliary losses of known usefulness, on any gymnasium environment.

The main objective ``td`` is the Q-learning TD error on replayed transitions (a DQN-style agent
with a target network, :mod:`~twcore_task_rl.agent_stream`). Auxiliary objectives share the
model's trunk:
- ``reward`` (helpful): predict the reward of the transition's action from its state;
- ``random`` (harmful): predict a fixed random function of the state (a target unrelated to
  control that competes for the trunk).

A concrete task (``gridworld-aux``, ``atari-aux``) says which environment, what the random
function is and how an evaluation episode is scored; everything else is here.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import gymnasium as gym
import torch
from torch import Tensor

from twcore.autodiff.data_parallel import sum_of_shares
from twcore.contract.batch import Batch
from twcore.contract.losses import squared_error_per_example
from twcore.contract.metrics import Direction
from twcore.contract.options import option
from twcore.contract.spec import Capability, HeadSpec, ObjectiveKind, ObjectiveSpec, Role, TaskSpec
from twcore.contract.stream import BatchStream
from twcore.contract.task import Task
from twcore_task_rl.agent_stream import AgentSettings, AgentStream, model_input
from twcore_task_rl.requests import check_stream_request

AUXILIARIES = ("reward", "random")
EVAL_SEEDS = {"val": 10_000, "test": 20_000}


@dataclass
class AuxiliaryQConfig:
    """The options every auxiliary-loss Q-learning task has (defaults are overridden per task)."""

    auxiliaries: list[str] = option(
        default_factory=lambda: ["reward", "random"],
        choices=AUXILIARIES,
        help="auxiliary objectives: reward (helpful), random (harmful); [] for none",
    )
    gamma: float = option(0.95, gt=0, lt=1, help="discount factor")
    epsilon_final: float = option(0.05, help="exploration rate after exploration_steps")
    exploration_steps: int = option(2000, help="environment steps of linearly falling ε")
    warmup: int = option(200, ge=1, help="random-action transitions before the first batch")
    capacity: int = option(10_000, ge=1, help="replay buffer size")
    target_update: int = option(100, ge=1, help="batches between target-network copies")
    env_steps: int = option(1, ge=1, help="environment steps per training batch")
    eval_episodes: int = option(20, ge=10, help="evaluation episodes (at least 10)")
    random_size: int = option(32, ge=1, help="size of the random auxiliary's target vectors")
    random_scale: float = option(5.0, help="scale of the random auxiliary's targets")

    def __post_init__(self) -> None:
        # `choices` checks each name; that none repeats is no per-element constraint.
        if len(set(self.auxiliaries)) != len(self.auxiliaries):
            raise ValueError(
                f"auxiliaries={list(self.auxiliaries)} repeats a name; list each auxiliary once"
            )

    def agent_settings(self) -> AgentSettings:
        """How the training stream's agent explores and learns."""
        return AgentSettings(
            gamma=self.gamma,
            epsilon_final=self.epsilon_final,
            exploration_steps=self.exploration_steps,
            warmup=self.warmup,
            capacity=self.capacity,
            target_update=self.target_update,
            env_steps=self.env_steps,
        )


class AuxiliaryQTask(Task):
    """Q-learning on an environment with optional auxiliary objectives (module docstring).

    Subclasses give :attr:`name`, :meth:`make_environment` and :meth:`random_targets`;
    :attr:`input_shape` and :attr:`actions` describe the environment, and
    :meth:`episode_metrics` may add metrics to an evaluation episode's return and length.
    """

    name: ClassVar[str]
    summary_metrics: ClassVar[tuple[str, ...]] = ("return", "length")

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one model input (one observation)."""

    @property
    @abstractmethod
    def actions(self) -> int:
        """The number of discrete actions."""

    @abstractmethod
    def make_environment(self, *, training: bool) -> gym.Env:
        """A fresh environment with ``get_state``/``set_state`` (for the training stream when
        `training`, else for evaluation episodes)."""

    @abstractmethod
    def random_targets(self, observations: Tensor) -> Tensor:
        """The harmful auxiliary's targets [B, random_size] of model inputs [B, ...]: a fixed
        random function of the state."""

    eval_epsilon: float = 0.0
    """The exploration rate of evaluation episodes (0: greedy)."""

    def episode_metrics(self, total: float, length: int, last_reward: float, ended: bool) -> dict:
        """The metrics of one evaluation episode: its return and length (subclasses add more;
        `ended` says it terminated rather than being truncated)."""
        return {"return": total, "length": float(length)}

    def run_episode(self, model: torch.nn.Module, seed: int, device: torch.device) -> dict:
        """Play one evaluation episode with `seed`, ε-greedy on the ``q`` head with
        :attr:`eval_epsilon` (exploration drawn from its own generator, seeded by `seed`)."""
        env = self.make_environment(training=False)
        generator = torch.Generator().manual_seed(seed)
        observation, _ = env.reset(seed=seed)
        total, length = 0.0, 0
        try:
            while True:
                explore = self.eval_epsilon > 0 and (
                    torch.rand((), generator=generator).item() < self.eval_epsilon
                )
                if explore:
                    action = int(torch.randint(self.actions, (), generator=generator))
                else:
                    inputs = model_input(torch.as_tensor(observation).unsqueeze(0).to(device))
                    action = int(model(inputs)["q"].argmax())
                observation, reward, terminated, truncated, _ = env.step(action)
                total += reward
                length += 1
                if terminated or truncated:
                    return self.episode_metrics(total, length, reward, ended=terminated)
        finally:
            env.close()

    @cached_property
    def spec(self) -> TaskSpec:  # type: ignore[override]
        auxiliaries = self.config.auxiliaries
        heads = [HeadSpec("q", self.actions)]
        objectives = [ObjectiveSpec("td", "q", ObjectiveKind.CUSTOM, Role.MAIN)]
        if "reward" in auxiliaries:
            heads.append(HeadSpec("reward", self.actions))
            objectives.append(
                ObjectiveSpec("reward", "reward", ObjectiveKind.CUSTOM, Role.AUXILIARY)
            )
        if "random" in auxiliaries:
            heads.append(HeadSpec("random", self.config.random_size))
            objectives.append(
                ObjectiveSpec("random", "random", ObjectiveKind.REGRESSION, Role.AUXILIARY)
            )
        return TaskSpec(
            input_shape=self.input_shape,
            heads=tuple(heads),
            objectives=tuple(objectives),
            capabilities=frozenset({Capability.ENVIRONMENT}),
            primary_metric="return",
            primary_mode="max",
            summary_metrics=self.summary_metrics,
        )

    episode_directions: ClassVar[dict[str, Direction]] = {"return": "max", "length": "none"}
    """The direction of each metric :meth:`episode_metrics` reports: the return is scored; an
    episode's length is reported, not scored (long is good on CartPole, bad on a gridworld)."""

    @property
    def metric_directions(self) -> dict[str, Direction]:
        """What :meth:`episode_metrics` reports, averaged over the evaluation episodes, with
        :attr:`episode_directions` (a metric without one is an error here, not a guess)."""
        reported = self.episode_metrics(0.0, 0, 0.0, ended=False)
        undeclared = [name for name in reported if name not in self.episode_directions]
        if undeclared:
            raise TypeError(
                f"{type(self).__name__}.episode_metrics reports {undeclared} without a direction; "
                "add them to episode_directions (max, min or none)"
            )
        return {name: self.episode_directions[name] for name in reported}

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """Evaluation episodes with validation seeds (every ``eval_every`` steps) and with test
        seeds. There is no validation *stream*: methods that meta-learn on validation batches
        (αVIL, TaskMet) do not fit this task."""
        return ("val", "test")

    def stream(
        self,
        split: str,
        batch_size: int,
        *,
        seed: int,
        device: torch.device,
        model: torch.nn.Module | None = None,
    ) -> BatchStream:
        check_stream_request(self.name, split, model)
        return AgentStream(
            self.make_environment(training=True),
            model,
            q_head="q",
            settings=self.config.agent_settings(),
            batch_size=batch_size,
            seed=seed,
            device=device,
            extra_targets=lambda sample: {
                "reward": sample["reward"],
                "random": self.random_targets(sample["observation"]),
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
        """`eval_episodes` episodes with this split's seeds; each metric's mean over them. In a
        data-parallel run each process plays its share of the episodes with its own forward
        passes, and the sums are added over the processes."""
        if split not in EVAL_SEEDS:
            raise ValueError(f"{self.name} evaluates 'val' or 'test', not '{split}'")
        count = self.config.eval_episodes
        names = list(self.episode_metrics(0.0, 0, 0.0, ended=False))
        was_training = model.training
        model.eval()
        try:
            totals = sum_of_shares(
                count,
                lambda episode: self.run_episode(model, EVAL_SEEDS[split] + episode, device),
                names,
                device,
            )
        finally:
            model.train(was_training)
        return {key: totals[key] / count for key in names}

    def state_dict(self) -> dict[str, Any]:
        return {}
