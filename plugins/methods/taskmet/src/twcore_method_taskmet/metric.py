"""The learned metric Λφ(x) over a d-dimensional prediction space.

Three kinds, all mapping an input's features x [B, F] to a positive-definite Λ per example:

- ``full`` (TaskMet's decision-focused setting): an MLP F → hidden → d·d gives L(x), and
  Λ = L Lᵀ + exp(s)·I with a learned scalar s (starting at 0). The last layer starts small, so
  training starts from Λ ≈ I, i.e. from the plain squared error.
- ``diagonal`` (TaskMet's RL setting, and a learned weighting over objectives): an MLP F → hidden
  → d gives o(x), and diag Λ = √d · softplus(o) / ‖softplus(o)‖, so ‖diag Λ‖ = √d always (the
  metric can only re-weight, not rescale, the loss). The last layer starts at zero: Λ = I.
  With a ``floor`` ε ∈ [0, 1), diag Λ = ε + (1 − ε) · (the above): no dimension's weight falls
  below ε (the diagonal counterpart of the full metric's exp(s)·I term).
- ``identity``: Λ = I, nothing learned (two-stage training through TaskMet's loop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

METRIC_KINDS = ("full", "diagonal", "identity")


@dataclass
class Metric:
    """Λ for a batch: `factor` L [B, d, d] and `shift` exp(s) (full), or `diagonal` [B, d]."""

    dim: int
    diagonal: Tensor | None = None
    factor: Tensor | None = None
    shift: Tensor | None = None

    def quadratic(self, residuals: Tensor) -> Tensor:
        """rᵀ Λ r / d per example [B] for residuals r [B, d] (= mean squared error when Λ = I)."""
        if self.factor is not None:
            assert self.shift is not None, "a full metric has its shift exp(s)"
            projected = torch.einsum("bij,bi->bj", self.factor, residuals)  # Lᵀ r
            value = projected.square().sum(-1) + self.shift * residuals.square().sum(-1)
        elif self.diagonal is not None:
            value = (self.diagonal * residuals.square()).sum(-1)
        else:  # the mean, as the tasks' own squared-error objectives compute it
            return residuals.square().mean(-1)
        return value / self.dim

    def weigh(self, losses: Tensor) -> Tensor:
        """Σ_k Λ_kk ℓ_k / d per example [B] for non-negative losses ℓ [B, d] (diagonal metrics
        only: a loss is a squared residual, so this is :meth:`quadratic` of √ℓ)."""
        if self.factor is not None:
            raise ValueError("a full metric cannot weigh losses; use metric=diagonal")
        if self.diagonal is None:
            return losses.mean(-1)
        return (self.diagonal * losses).sum(-1) / self.dim

    def matrix(self) -> Tensor:
        """Λ [B, d, d]."""
        if self.factor is not None:
            assert self.shift is not None, "a full metric has its shift exp(s)"
            eye = torch.eye(self.dim, dtype=self.factor.dtype, device=self.factor.device)
            return self.factor @ self.factor.transpose(1, 2) + self.shift * eye
        return torch.diag_embed(self.diagonal_entries())

    def diagonal_entries(self) -> Tensor:
        """diag Λ [B, d] (or [1, d] for the identity)."""
        if self.factor is not None:
            assert self.shift is not None, "a full metric has its shift exp(s)"
            return self.factor.square().sum(-1) + self.shift
        if self.diagonal is not None:
            return self.diagonal
        return torch.ones(1, self.dim)


class MetricNetwork(nn.Module):
    """x [B, F] -> :class:`Metric` over a d-dimensional prediction space (see module docstring).

    Args:
        num_features: F.
        dim: d, the prediction space's dimension.
        kind: ``full``, ``diagonal`` or ``identity``.
        hidden: width of the hidden layer (TaskMet: 200).
        init_scale: standard deviation of the full metric's last layer at initialisation.
        floor: the diagonal metric's least weight per dimension, in [0, 1).
    """

    def __init__(
        self,
        num_features: int,
        dim: int,
        kind: str,
        hidden: int = 200,
        init_scale: float = 0.01,
        floor: float = 0.0,
    ) -> None:
        super().__init__()
        if kind not in METRIC_KINDS:
            raise ValueError(f"metric kind '{kind}' is not one of {', '.join(METRIC_KINDS)}")
        if not 0 <= floor < 1:
            raise ValueError(f"metric floor {floor} must be in [0, 1)")
        self.dim, self.kind, self.floor = dim, kind, floor
        if kind == "identity":
            self.body = None
            return
        outputs = dim * dim if kind == "full" else dim
        self.body = nn.Sequential(nn.Linear(num_features, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, outputs)
        with torch.no_grad():
            if kind == "full":
                self.head.weight.normal_(0.0, init_scale / math.sqrt(hidden))
                self.head.bias.normal_(0.0, init_scale)
                self.log_shift = nn.Parameter(torch.zeros(()))
            else:
                self.head.weight.zero_()
                self.head.bias.zero_()

    def forward(self, features: Tensor) -> Metric:
        if self.body is None:
            return Metric(self.dim)
        raw = self.head(self.body(features.flatten(1)))
        if self.kind == "full":
            factor = raw.reshape(-1, self.dim, self.dim)
            return Metric(self.dim, factor=factor, shift=self.log_shift.exp())
        positive = nn.functional.softplus(raw)
        diagonal = math.sqrt(self.dim) * positive / positive.norm(dim=-1, keepdim=True)
        return Metric(self.dim, diagonal=self.floor + (1.0 - self.floor) * diagonal)
