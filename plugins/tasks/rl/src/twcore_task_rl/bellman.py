"""Bellman targets for value-based learning, batched."""

from __future__ import annotations

import torch
from torch import Tensor


def q_learning_targets(rewards: Tensor, terminated: Tensor, next_q: Tensor, gamma: float) -> Tensor:
    """y = r + γ (1 − terminated) max_a' Q(s', a').

    Args:
        rewards: [B]; terminated: [B] (1 where s' is terminal, so nothing is bootstrapped; a
            time-limit truncation is *not* terminal); next_q: [B, A] action values at s'.
    """
    return rewards + gamma * (1.0 - terminated.float()) * next_q.max(dim=1).values


def soft_q_targets(
    rewards: Tensor, terminated: Tensor, next_q: Tensor, gamma: float, temperature: float
) -> Tensor:
    """y = r + γ (1 − terminated) · α log Σ_a' exp(Q(s', a') / α), the soft (max-entropy) target.

    It tends to :func:`q_learning_targets` as the temperature α → 0.
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    soft_value = temperature * torch.logsumexp(next_q / temperature, dim=1)
    return rewards + gamma * (1.0 - terminated.float()) * soft_value
