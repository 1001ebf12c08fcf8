"""``portfolio``: mean-variance portfolio choice on the simplex from predicted next-day returns.

maximise_x pᵀx − α xᵀΣx  s.t. x ≥ 0, Σ_i x_i = 1   (α = ``risk_aversion``, 0.1 by default)

One instance is one trading day of n assets: the model predicts each asset's next-day return p
from rolling-window features of its past returns, the solver returns the portfolio x*(p), and the
decision is scored with the realised returns y: yᵀx − α xᵀΣx. Σ (``batch.context["covariance"]``,
[N, n, n] per day) is known, not predicted. The returns come from a seeded factor model
(:func:`twcore_task_decision.generators.market_returns`); see the README for how it relates to
the original Quandl WIKI data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.options import option
from twcore_task_decision.decision_task import HEAD, DecisionTask, cut_splits, split_sizes
from twcore_task_decision.generators import (
    MEAN_WINDOWS,
    PORTFOLIO_FEATURES,
    RETURN_LAGS,
    VOLATILITY_WINDOWS,
    market_returns,
    rolling_features,
    trailing_correlation,
)
from twcore_task_decision.solvers.portfolio import (
    portfolio_objective,
    solve_portfolio,
    solve_portfolio_cvxpylayers,
)

COVARIANCE = "covariance"
"""Context key of the per-instance risk matrix Σ [B, n, n]."""

SOLVERS = {"ours": solve_portfolio, "cvxpylayers": solve_portfolio_cvxpylayers}


@dataclass
class PortfolioConfig:
    num_assets: int = option(50, ge=2, help="n, assets per instance")
    risk_aversion: float = option(0.1, gt=0, help="α, weight of the risk term α xᵀΣx")
    solver: str = option(
        "ours",
        choices=SOLVERS,
        help="decision solver: ours (batched KKT) or cvxpylayers",
    )
    num_factors: int = option(
        4, ge=1, help="K, factors of the return model (the first is the market)"
    )
    covariance_window: int = option(
        60, ge=2, help="trading days the correlation Σ is estimated from"
    )
    covariance_ridge: float = option(0.1, ge=0, help="added to Σ's diagonal (as in the original)")
    train_size: int = option(200, ge=1, help="training days (instances), oldest first")
    val_size: int = option(200, ge=1, help="validation days, after the training days")
    test_size: int = option(400, ge=1, help="test days, after the validation days")
    data_seed: int = option(0, help="seed of the generated market")


class Portfolio(DecisionTask):
    """Mean-variance portfolio optimisation with predicted returns (one instance per day)."""

    Config = PortfolioConfig
    name = "portfolio"
    non_data_options = frozenset({"solver"})
    affine_objective = True  # yᵀx − α xᵀΣx: the risk term does not depend on the returns

    @property
    def num_features(self) -> int:
        return PORTFOLIO_FEATURES

    def generate_splits(self) -> dict[str, Batch]:
        c = self.config
        generator = torch.Generator().manual_seed(c.data_seed)
        sizes = split_sizes(c)
        history = max(RETURN_LAGS, *MEAN_WINDOWS, *VOLATILITY_WINDOWS, c.covariance_window)
        total = sum(sizes.values())
        # Day t's instance uses returns up to day t as features and day t + 1's return as y.
        returns = market_returns(history + total, c.num_assets, c.num_factors, generator)
        days = torch.arange(history - 1, history - 1 + total)
        features = rolling_features(returns, days)
        targets = returns[days + 1]
        identity = torch.eye(c.num_assets, dtype=returns.dtype)
        covariance = trailing_correlation(returns, days, c.covariance_window)
        covariance = covariance + c.covariance_ridge * identity
        # Standardise each feature with training-day statistics only (no look-ahead).
        train = features[: c.train_size].reshape(-1, PORTFOLIO_FEATURES)
        features = (features - train.mean(dim=0)) / train.std(dim=0).clamp_min(1e-12)
        instances = Batch(
            inputs=features.float(),
            targets={HEAD: targets.float()},
            context={COVARIANCE: covariance.float()},
        )
        return cut_splits(sizes, instances)

    def decide(self, predictions: Tensor, batch: Batch) -> Tensor:
        """Optimal portfolios x [B, n] for predicted returns (differentiable)."""
        solver = SOLVERS[self.config.solver]
        return solver(predictions, batch.context[COVARIANCE], self.config.risk_aversion)

    def reference_decide(self, predictions: Tensor, batch: Batch) -> Tensor:
        # The quality references do not depend on the solver switch: always the batched solver.
        return solve_portfolio(predictions, batch.context[COVARIANCE], self.config.risk_aversion)

    def decision_objective(self, decisions: Tensor, batch: Batch) -> Tensor:
        """yᵀx − α xᵀΣx under the realised returns y, per instance [B]."""
        return portfolio_objective(
            decisions, batch.targets[HEAD], batch.context[COVARIANCE], self.config.risk_aversion
        )
