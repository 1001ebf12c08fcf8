"""Seeded data generators of the decision tasks (no downloads; every draw from a torch.Generator).

Each generator returns whole splits' worth of instances; the tasks cut them into splits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# Portfolio features, after the original benchmark's rolling-window price features: the latest
# daily returns, mean returns over about a week, a month and a quarter, and volatilities over the
# same windows (the original also used 120- and 365-day windows; 60 keeps the warm-up short).
RETURN_LAGS = 3
MEAN_WINDOWS = (7, 30, 60)
VOLATILITY_WINDOWS = (7, 30, 60)
PORTFOLIO_FEATURES = RETURN_LAGS + len(MEAN_WINDOWS) + len(VOLATILITY_WINDOWS)


def cubic_instances(
    num_instances: int, num_items: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Cubic top-k instances: x ~ U[−1, 1] per item and y = 10 (x³ − 0.65 x).

    Returns:
        features x [N, n, 1] and values y [N, n].
    """
    x = 2.0 * torch.rand(num_instances, num_items, 1, generator=generator) - 1.0
    y = 10.0 * (x.pow(3) - 0.65 * x)
    return x, y.squeeze(-1)


@dataclass(frozen=True)
class MarketModel:
    """Parameters of the synthetic daily-return model of the portfolio task.

    r_t = d_t + B f_t + σ_t ⊙ ε_t per asset, with
    - a persistent drift d_t = ρ d_{t−1} + η_t (AR(1), stationary std `drift_std`): the
      predictable part, which rolling mean returns estimate;
    - K factor returns f_t ~ N(0, diag(factor_vol²)) with loadings B (the first factor is a
      market factor with loadings around 1): the correlation the covariance captures;
    - idiosyncratic noise ε_t ~ N(0, 1) with GARCH(1,1) volatility
      σ²_t = σ̄²(1 − a − b) + a (σ_{t−1} ε_{t−1})² + b σ²_{t−1}: volatility clustering, which
      rolling volatilities pick up.
    """

    drift_persistence: float = 0.98
    drift_std: float = 0.004
    market_vol: float = 0.01
    factor_vol: float = 0.005
    idiosyncratic_vol: tuple[float, float] = (0.01, 0.03)
    garch_shock: float = 0.08
    garch_persistence: float = 0.9


def market_returns(
    num_days: int,
    num_assets: int,
    num_factors: int,
    generator: torch.Generator,
    model: MarketModel = MarketModel(),
) -> Tensor:
    """Daily returns [T, n] of `num_assets` assets from the :class:`MarketModel`."""
    n, k = num_assets, num_factors
    low, high = model.idiosyncratic_vol
    long_run_vol = low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)
    loadings = 0.5 * torch.randn(n, k, generator=generator, dtype=torch.float64)
    loadings[:, 0] += 1.0
    factor_vol = torch.full((k,), model.factor_vol, dtype=torch.float64)
    factor_vol[0] = model.market_vol
    factors = torch.randn(num_days, k, generator=generator, dtype=torch.float64) * factor_vol
    noise = torch.randn(num_days, n, generator=generator, dtype=torch.float64)
    innovation_std = model.drift_std * math.sqrt(1.0 - model.drift_persistence**2)
    innovations = innovation_std * torch.randn(
        num_days, n, generator=generator, dtype=torch.float64
    )

    drift = model.drift_std * torch.randn(n, generator=generator, dtype=torch.float64)
    variance = long_run_vol.square()
    base = long_run_vol.square() * (1.0 - model.garch_shock - model.garch_persistence)
    idiosyncratic = torch.empty(num_days, n, dtype=torch.float64)
    drifts = torch.empty(num_days, n, dtype=torch.float64)
    # A recursion in time (vectorised over assets): each day's volatility needs yesterday's shock.
    for t in range(num_days):
        drift = model.drift_persistence * drift + innovations[t]
        shock = variance.sqrt() * noise[t]
        idiosyncratic[t], drifts[t] = shock, drift
        variance = base + model.garch_shock * shock.square() + model.garch_persistence * variance
    return drifts + factors @ loadings.T + idiosyncratic


def rolling_features(returns: Tensor, days: Tensor) -> Tensor:
    """Rolling-window features [D, n, PORTFOLIO_FEATURES] at the given day indices [D].

    Uses only returns up to and including each day: the last `RETURN_LAGS` returns, the mean
    return over each of `MEAN_WINDOWS` and the volatility (std) over each of
    `VOLATILITY_WINDOWS` (every day needs at least 60 days of history).
    """
    zero = returns.new_zeros(1, returns.shape[1])
    sums = torch.cat([zero, returns.cumsum(dim=0)])  # sums[t + 1] = Σ_{s ≤ t} r_s
    squares = torch.cat([zero, returns.square().cumsum(dim=0)])
    end = days + 1
    columns = [returns[days - lag] for lag in range(RETURN_LAGS)]
    for window in MEAN_WINDOWS:
        columns.append((sums[end] - sums[end - window]) / window)
    for window in VOLATILITY_WINDOWS:
        mean = (sums[end] - sums[end - window]) / window
        mean_square = (squares[end] - squares[end - window]) / window
        columns.append((mean_square - mean.square()).clamp_min(0.0).sqrt())
    return torch.stack(columns, dim=-1)


def trailing_correlation(returns: Tensor, days: Tensor, window: int) -> Tensor:
    """Correlation matrices [D, n, n] of the `window` daily returns up to each day in `days`."""
    windows = returns.unfold(0, window, 1)[days - window + 1]  # [D, n, window]
    centred = windows - windows.mean(dim=-1, keepdim=True)
    scaled = centred / centred.square().sum(dim=-1, keepdim=True).sqrt().clamp_min(1e-12)
    return scaled @ scaled.transpose(-1, -2)


def budget_instances(
    num_instances: int,
    num_channels: int,
    num_targets: int,
    num_features: int,
    latent_dim: int,
    feature_noise: float,
    generator: torch.Generator,
    extra_dims: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Budget-allocation instances: reach probabilities, item features and target weights.

    Each (channel i, target j) item has a latent u ~ N(0, I_L); its true reach is
    Y_ij = sigmoid(5 tanh(u W) v − 3) for a fixed random network (W, v) (mean reach ≈ 0.26,
    a tenth of the items above 0.9), and its features are a
    noisy linear view x = u A + σ ε with a fixed random A [L, F]. A model must undo the mixing and
    learn the nonlinearity. Target weights w_j ~ U[0.5, 1.5] per instance.

    `extra_dims` > 0 adds LODL's random extra features: each item also has r ~ N(0, I_E), mixed
    into its features by a fixed random B [E, F] but not into its reach, x = √(L/(L+E)) u A +
    r B / √(L+E) + σ ε, so a feature keeps unit variance of which only the fraction L/(L+E)
    says anything about the reach (as LODL mixes its targets with 500 random ones through one
    random linear layer). The draws for ``extra_dims = 0`` are the same as without the option.

    Returns:
        features [N, m·n, F] (items in channel-major order: item i·n + j), reach [N, m·n] in
        (0, 1) and target weights [N, n].
    """
    items = num_channels * num_targets
    hidden = 16
    first = torch.randn(latent_dim, hidden, generator=generator) * (4.0 / math.sqrt(latent_dim))
    second = torch.randn(hidden, generator=generator) / math.sqrt(hidden)
    mixing = torch.randn(latent_dim, num_features, generator=generator) / math.sqrt(latent_dim)
    latent = torch.randn(num_instances, items, latent_dim, generator=generator)
    reach = torch.sigmoid(5.0 * torch.tanh(latent @ first) @ second - 3.0)
    noise = torch.randn(num_instances, items, num_features, generator=generator)
    features = latent @ mixing + feature_noise * noise
    weights = 0.5 + torch.rand(num_instances, num_targets, generator=generator)
    if extra_dims:
        dims = latent_dim + extra_dims
        extra_mixing = torch.randn(extra_dims, num_features, generator=generator)
        extra = torch.randn(num_instances, items, extra_dims, generator=generator)
        signal = math.sqrt(latent_dim / dims) * (latent @ mixing)
        features = signal + extra @ (extra_mixing / math.sqrt(dims)) + feature_noise * noise
    return features, reach, weights


def knapsack_instances(
    num_instances: int,
    num_items: int,
    num_features: int,
    degree: int,
    noise_width: float,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor]:
    """PyEPO's knapsack data (``pyepo.data.knapsack.genData``, one capacity dimension).

    Features x ~ N(0, I_p) per instance; with B ~ Bernoulli(0.5) [n, p] drawn once, item i's
    value is ⌈5 ((B x / √p + 3)^deg + 1) / 3.5^deg · ε_i⌉ with ε_i ~ U[1 − ε̄, 1 + ε̄]
    (ε̄ = `noise_width`); item weights are drawn once, uniform on {3.00, 3.01, …, 7.99}.

    Returns:
        features x [N, p], values y [N, n] and weights w [n].
    """
    weights = torch.randint(300, 800, (num_items,), generator=generator).double() / 100
    mixing = torch.bernoulli(torch.full((num_items, num_features), 0.5), generator=generator)
    x = torch.randn(num_instances, num_features, generator=generator)
    signal = (x @ mixing.T / math.sqrt(num_features) + 3).pow(degree) + 1
    noise = (
        1
        - noise_width
        + 2 * noise_width * torch.rand(num_instances, num_items, generator=generator)
    )
    values = torch.ceil(5 * signal / 3.5**degree * noise)
    return x, values, weights


def shortest_path_instances(
    num_instances: int,
    num_edges: int,
    num_features: int,
    degree: int,
    noise_width: float,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """PyEPO's shortest-path data (``pyepo.data.shortestpath.genData``).

    Features x ~ N(0, I_p) per instance; with B ~ Bernoulli(0.5) [E, p] drawn once, edge e's cost
    is ((B x / √p + 3)^deg + 1) / 3.5^deg · ε_e with ε_e ~ U[1 − ε̄, 1 + ε̄].

    Returns:
        features x [N, p] and edge costs c [N, E].
    """
    mixing = torch.bernoulli(torch.full((num_edges, num_features), 0.5), generator=generator)
    x = torch.randn(num_instances, num_features, generator=generator)
    signal = ((x @ mixing.T / math.sqrt(num_features) + 3).pow(degree) + 1) / 3.5**degree
    noise = (
        1
        - noise_width
        + 2 * noise_width * torch.rand(num_instances, num_edges, generator=generator)
    )
    return x, signal * noise
