"""A soft-Q agent trained on transitions a learned dynamics model generates (Dyna-style).

The agent sees full observations (true state and distractors), acts by a Boltzmann policy
π(a|s) ∝ exp(Q(s, a)/α) and learns from *model* transitions: for real states s and actions a
from the replay buffer, ŝ' = model(s, a), and

    y = r(ŝ') + γ (1 − done(ŝ')) · α log Σ_a' exp(Q_target(ŝ', a')/α)

with CartPole's known reward and termination applied to the predicted true dimensions. The
target network follows Q by Polyak averaging.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

from twcore_task_rl.bellman import soft_q_targets

# CartPole-v1 terminates when |x| > 2.4 or |θ| > 12° (gymnasium's thresholds).
X_LIMIT = 2.4
ANGLE_LIMIT = 12 * 2 * math.pi / 360


def cartpole_done(states: Tensor) -> Tensor:
    """CartPole's termination rule on (predicted) states [B, ≥4]: 1.0 where the episode ends."""
    return ((states[:, 0].abs() > X_LIMIT) | (states[:, 2].abs() > ANGLE_LIMIT)).float()


class SoftQAgent(nn.Module):
    """Q network, its Polyak target and their optimiser."""

    def __init__(
        self,
        observation_size: int,
        actions: int,
        *,
        hidden: int,
        lr: float,
        temperature: float,
        gamma: float,
        polyak: float,
        seed: int,
    ) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.q = nn.Sequential(
                nn.Linear(observation_size, hidden),
                nn.ReLU(),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Linear(hidden, actions),
            )
        self.target = copy.deepcopy(self.q).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=lr)
        self.temperature = temperature
        self.gamma = gamma
        self.polyak = polyak

    def act(self, observation: Tensor, generator: torch.Generator, greedy: bool = False) -> int:
        """An action from the Boltzmann policy (or the greedy one); uniformly random while the
        Q values are not finite (a diverged agent still acts, and the run goes on)."""
        with torch.no_grad():
            values = self.q(observation.unsqueeze(0))[0]
        if not torch.isfinite(values).all():
            return int(torch.randint(values.numel(), (), generator=generator))
        if greedy:
            return int(values.argmax())
        probabilities = torch.softmax(values / self.temperature, dim=0)
        return int(torch.multinomial(probabilities, 1, generator=generator))

    def model_targets(self, predicted_next: Tensor) -> Tensor:
        """Soft-Q targets [B] of model transitions from the target network (no graph)."""
        with torch.no_grad():
            return self.targets_from(predicted_next, self.target(predicted_next))

    def targets_from(self, predicted_next: Tensor, next_q: Tensor) -> Tensor:
        """Soft-Q targets [B] of model transitions ŝ' whose action values are `next_q` [B, A]:
        CartPole's reward 1, done from the predicted state (not differentiated)."""
        rewards = torch.ones(predicted_next.shape[0], device=predicted_next.device)
        done = cartpole_done(predicted_next.detach())
        return soft_q_targets(rewards, done, next_q, self.gamma, self.temperature)

    def update(self, observations: Tensor, actions: Tensor, targets: Tensor) -> float:
        """One Adam step on (Q(s, a) − y)², then the Polyak target update; the loss.

        A non-finite loss (targets from a diverged model, say) skips the step: the agent is
        left as it was, and the returned loss says why.
        """
        values = self.q(observations).gather(1, actions.unsqueeze(1)).squeeze(1)
        loss = (values - targets).pow(2).mean()
        if not torch.isfinite(loss):
            return float(loss.detach())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            for target, source in zip(self.target.parameters(), self.q.parameters(), strict=True):
                target.lerp_(source, self.polyak)
        return float(loss.detach())

    def real_bellman_error(
        self,
        observations: Tensor,
        actions: Tensor,
        rewards: Tensor,
        next_observations: Tensor,
        terminated: Tensor,
    ) -> Tensor:
        """(Q(s, a) − r − γ (1 − terminated) V_target(s'))² per transition [B], on real data."""
        with torch.no_grad():
            targets = soft_q_targets(
                rewards, terminated, self.target(next_observations), self.gamma, self.temperature
            )
            values = self.q(observations).gather(1, actions.unsqueeze(1)).squeeze(1)
        return (values - targets).pow(2)

    def agent_state(self) -> dict[str, Any]:
        return {
            "q": self.q.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_agent_state(self, state: dict[str, Any]) -> None:
        self.q.load_state_dict(state["q"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
