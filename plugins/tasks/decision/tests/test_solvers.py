"""The batched solvers against independent references: cvxpy (Clarabel, an interior-point solver)
for the convex problems, cvxpylayers for the portfolio gradients, brute force and finite
differences for budget allocation, and the per-instance loop for batching."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch
from twcore_task_decision.solvers.budget import (
    budget_gradient,
    budget_objective,
    budget_vertices,
    solve_budget,
    solve_budget_exact,
)
from twcore_task_decision.solvers.portfolio import (
    portfolio_objective,
    solve_portfolio,
    solve_portfolio_cvxpylayers,
)
from twcore_task_decision.solvers.projection import project_capped_simplex
from twcore_task_decision.solvers.topk import hard_topk, soft_topk

# Clarabel run to tight tolerances is accurate to about 1e-7; ours are exact to round-off.
CLARABEL_TOLERANCES = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12}
DECISION_TOLERANCE = 1e-6


def _clarabel(problem: cp.Problem) -> None:
    problem.solve(solver=cp.CLARABEL, **CLARABEL_TOLERANCES)
    assert problem.status == cp.OPTIMAL, problem.status


def _random_correlation(generator: torch.Generator, n: int, ridge: float = 0.1) -> torch.Tensor:
    factors = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    returns = torch.randn(80, 3, generator=generator, dtype=torch.float64) @ factors.T
    returns = returns + torch.randn(80, n, generator=generator, dtype=torch.float64)
    return torch.corrcoef(returns.T) + ridge * torch.eye(n, dtype=torch.float64)


# -- projection ---------------------------------------------------------------------------------


def _projection_cases() -> list[tuple[np.ndarray, float]]:
    rng = np.random.default_rng(0)
    cases = []
    for index in range(60):
        n = int(rng.integers(2, 12))
        values = rng.normal(scale=2.0, size=n)
        if index % 5 == 0:
            values[: n // 2] = values[0]  # ties
        total = [0.0, float(n), 1.0, float(rng.uniform(0, n))][index % 4]
        cases.append((values, total))
    return cases


def test_projection_matches_cvxpy_on_60_instances_including_ties_and_the_box_corners():
    for values, total in _projection_cases():
        z = cp.Variable(values.size)
        _clarabel(
            cp.Problem(
                cp.Minimize(cp.sum_squares(z - values)), [z >= 0, z <= 1, cp.sum(z) == total]
            )
        )
        ours = project_capped_simplex(torch.tensor(values).unsqueeze(0), total)[0].numpy()
        np.testing.assert_allclose(ours, z.value, atol=DECISION_TOLERANCE)
        assert ours.sum() == pytest.approx(total, abs=1e-12)


def test_projection_is_idempotent_and_batched_rows_are_independent():
    generator = torch.Generator().manual_seed(1)
    values = torch.randn(64, 9, generator=generator, dtype=torch.float64) * 3
    totals = torch.linspace(0.5, 8.5, 64, dtype=torch.float64).unsqueeze(-1)
    once = project_capped_simplex(values, totals)
    torch.testing.assert_close(project_capped_simplex(once, totals), once, rtol=0, atol=1e-12)
    rows = torch.cat(
        [project_capped_simplex(values[i : i + 1], totals[i : i + 1]) for i in range(64)]
    )
    torch.testing.assert_close(rows, once, rtol=0, atol=1e-12)


# -- portfolio -----------------------------------------------------------------------------------


def _portfolio_instances() -> tuple[torch.Tensor, torch.Tensor]:
    """60 instances of 15 assets: random returns, plus degenerate ones (tied returns, one asset
    so good it takes all the weight, identical assets, a nearly singular Σ)."""
    generator = torch.Generator().manual_seed(2)
    n, batch = 15, 60
    returns = 0.2 * torch.randn(batch, n, generator=generator, dtype=torch.float64)
    sigma = torch.stack([_random_correlation(generator, n) for _ in range(batch)])
    returns[0] = 0.1  # all tied: the minimum-variance portfolio
    returns[1, 3] = 50.0  # one asset takes all the weight (a vertex)
    returns[2, :5] = returns[2, 0]  # ties among the best assets
    sigma[3] = _random_correlation(generator, n, ridge=1e-6)  # nearly singular Σ
    sigma[4] = torch.eye(n, dtype=torch.float64)
    returns[5] = -returns[5].abs()  # every return negative
    return returns, sigma


def _cvxpy_portfolio(p: np.ndarray, sigma: np.ndarray, alpha: float) -> np.ndarray:
    x = cp.Variable(p.size)
    objective = cp.Maximize(p @ x - alpha * cp.quad_form(x, cp.psd_wrap(sigma)))
    _clarabel(cp.Problem(objective, [x >= 0, cp.sum(x) == 1]))
    return x.value


def test_portfolio_decisions_match_cvxpy_on_60_instances_including_degenerate_ones():
    returns, sigma = _portfolio_instances()
    ours = solve_portfolio(returns, sigma, 0.1)
    for row in range(len(returns)):
        reference = _cvxpy_portfolio(returns[row].numpy(), sigma[row].numpy(), 0.1)
        np.testing.assert_allclose(ours[row].numpy(), reference, atol=DECISION_TOLERANCE)
    assert ours.min() >= 0
    torch.testing.assert_close(ours.sum(-1), torch.ones(len(returns), dtype=torch.float64))
    assert ours[1, 3] == 1.0  # the dominant asset holds everything, exactly


def test_portfolio_is_optimal_no_feasible_perturbation_improves_it():
    returns, sigma = _portfolio_instances()
    x = solve_portfolio(returns, sigma, 0.1)
    best = portfolio_objective(x, returns, sigma, 0.1)
    generator = torch.Generator().manual_seed(3)
    for _ in range(20):
        other = project_capped_simplex(x + 0.05 * torch.randn(x.shape, generator=generator), 1.0)
        assert (portfolio_objective(other, returns, sigma, 0.1) <= best + 1e-12).all()


def test_portfolio_gradients_match_cvxpylayers_and_finite_differences():
    returns, sigma = _portfolio_instances()
    returns, sigma = returns[6:26], sigma[6:26]  # 20 non-degenerate instances
    weights = torch.randn(returns.shape, generator=torch.Generator().manual_seed(4)).double()

    def vjp(solver) -> torch.Tensor:
        p = returns.clone().requires_grad_()
        (solver(p, sigma, 0.1) * weights).sum().backward()
        return p.grad

    ours, reference = vjp(solve_portfolio), vjp(solve_portfolio_cvxpylayers)
    assert float((ours - reference).norm() / reference.norm()) < 1e-3
    direction = torch.randn(returns.shape, generator=torch.Generator().manual_seed(5)).double()
    step = 1e-7
    with torch.no_grad():
        ahead = (solve_portfolio(returns + step * direction, sigma, 0.1) * weights).sum()
        behind = (solve_portfolio(returns - step * direction, sigma, 0.1) * weights).sum()
    finite = float((ahead - behind) / (2 * step))
    assert float((ours * direction).sum()) == pytest.approx(finite, rel=1e-5)


def test_batched_portfolio_equals_the_per_instance_solutions():
    returns, sigma = _portfolio_instances()
    batched = solve_portfolio(returns, sigma, 0.1)
    single = torch.cat([solve_portfolio(returns[i : i + 1], sigma[i], 0.1) for i in range(10)])
    torch.testing.assert_close(batched[:10], single, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("returns", "sigma", "alpha", "message"),
    [
        (torch.tensor([[float("nan"), 0.1]]), torch.eye(2), 0.1, "contain NaN or inf"),
        (torch.zeros(1, 2), torch.tensor([[1.0, 2.0], [2.0, 1.0]]), 0.1, "not positive semidef"),
        (torch.zeros(1, 2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]), 0.1, "not symmetric"),
        (torch.zeros(1, 2), torch.eye(2), -1.0, "alpha=-1.0 must be > 0"),
        (torch.zeros(1, 3), torch.eye(2), 0.1, r"covariance must be \[3, 3\]"),
    ],
)
def test_portfolio_refuses_invalid_inputs(returns, sigma, alpha, message):
    with pytest.raises(ValueError, match=message):
        solve_portfolio(returns, sigma, alpha)


# -- budget allocation ---------------------------------------------------------------------------


def _budget_instances(batch: int = 60, channels: int = 5, targets: int = 10):
    generator = torch.Generator().manual_seed(6)
    reach = torch.rand(batch, channels, targets, generator=generator, dtype=torch.float64) ** 2
    weights = 0.5 + torch.rand(batch, targets, generator=generator, dtype=torch.float64)
    reach[0] = reach[0, :1]  # identical channels (ties)
    reach[1] = 0.0  # nobody reaches anybody
    reach[2, 4] = 1.0  # one perfect channel
    return reach, weights


@pytest.mark.parametrize("budget", [1.0, 2.0, 2.5, 5.0])
def test_exact_budget_decision_beats_a_fine_grid_of_feasible_allocations(budget):
    # Brute force: every allocation on a grid of step 1/10 (1,001 points for 5 channels).
    reach, weights = _budget_instances(batch=20)
    grid = torch.cartesian_prod(*[torch.linspace(0, 1, 11, dtype=torch.float64)] * 5)
    grid = grid[(grid.sum(-1) - budget).abs() < 1e-9]
    z = solve_budget_exact(reach, weights, budget)
    best = budget_objective(z, reach, weights)
    for row in range(20):
        values = budget_objective(grid, reach[row].expand(len(grid), -1, -1), weights[row])
        assert best[row] >= values.max() - 1e-12
    assert torch.allclose(z.sum(-1), torch.full((20,), budget, dtype=torch.float64))


def test_budget_equal_to_the_number_of_channels_funds_everything_with_zero_gradient():
    reach, weights = _budget_instances(batch=8)
    reach.requires_grad_()
    z = solve_budget(reach, weights, 5.0, smoothing=1.0)
    assert torch.equal(z.detach(), torch.ones(8, 5, dtype=torch.float64))
    (grad,) = torch.autograd.grad(z.sum(), reach, allow_unused=True)
    assert grad is None or grad.abs().max() == 0


def test_smoothed_budget_decisions_are_fixed_points_of_the_cvxpy_projected_gradient_map():
    # First-order optimality of max g(z) over the capped simplex ⇔ z = Π(z + η ∇g(z)); the
    # projection Π is solved independently by cvxpy.
    smoothing, budget = 1.0, 2.0
    reach, weights = _budget_instances()
    z = solve_budget(reach, weights, budget, smoothing=smoothing).detach()
    ascent = (budget_gradient(z, reach, weights) - smoothing * z).numpy()
    for row in range(len(z)):
        point = z[row].numpy() + 0.1 * ascent[row]
        projected = cp.Variable(5)
        constraints = [projected >= 0, projected <= 1, cp.sum(projected) == budget]
        _clarabel(cp.Problem(cp.Minimize(cp.sum_squares(projected - point)), constraints))
        np.testing.assert_allclose(z[row].numpy(), projected.value, atol=DECISION_TOLERANCE)


def test_smoothed_budget_gradient_matches_finite_differences():
    reach, weights = _budget_instances()
    reach, weights = reach[3:].clamp(0.05, 0.95), weights[3:]  # away from the clamp kinks
    direction = torch.randn(reach.shape, generator=torch.Generator().manual_seed(7)).double()
    score = torch.randn(reach.shape[:2], generator=torch.Generator().manual_seed(8)).double()
    p = reach.clone().requires_grad_()
    (solve_budget(p, weights, 2.0, smoothing=1.0) * score).sum().backward()
    analytic = float((p.grad * direction).sum())
    step = 1e-7
    with torch.no_grad():
        ahead = (solve_budget(reach + step * direction, weights, 2.0, smoothing=1.0) * score).sum()
        behind = (solve_budget(reach - step * direction, weights, 2.0, smoothing=1.0) * score).sum()
    assert abs(analytic) > 1e-3
    assert analytic == pytest.approx(float((ahead - behind) / (2 * step)), rel=1e-4)


def test_smoothing_tends_to_the_exact_decision():
    reach, weights = _budget_instances()
    exact = budget_objective(solve_budget_exact(reach, weights, 2.0), reach, weights)
    gaps = []
    for smoothing in (1.0, 0.3, 0.1, 0.0):
        z = solve_budget(reach, weights, 2.0, smoothing=smoothing).detach()
        gaps.append(float((exact - budget_objective(z, reach, weights)).max()))
    assert all(gap >= -1e-12 for gap in gaps)
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] <= 1e-12


def test_batched_budget_equals_the_per_instance_solutions():
    reach, weights = _budget_instances(batch=12)
    batched = solve_budget(reach, weights, 2.0, smoothing=1.0)
    single = torch.cat(
        [solve_budget(reach[i : i + 1], weights[i], 2.0, smoothing=1.0) for i in range(12)]
    )
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-10)


def test_budget_vertices_are_the_corners_of_the_capped_simplex():
    assert len(budget_vertices(5, 2.0)) == 10
    assert len(budget_vertices(5, 2.5)) == 30  # C(5, 2) · 3 places for the half
    assert all(sum(v) == pytest.approx(2.5) for v in budget_vertices(5, 2.5))


@pytest.mark.parametrize(
    ("budget", "reach", "message"),
    [
        (-1.0, torch.rand(2, 5, 10), r"budget=-1.0 must be in \(0, 5\]"),
        (6.0, torch.rand(2, 5, 10), r"budget=6.0 must be in \(0, 5\]"),
        (2.0, torch.full((2, 5, 10), float("nan")), "contain NaN or inf"),
        (2.0, torch.rand(2, 50), r"reach must be \[B, channels, targets\]"),
    ],
)
def test_budget_refuses_invalid_inputs(budget, reach, message):
    with pytest.raises(ValueError, match=message):
        solve_budget(reach, torch.ones(10), budget, smoothing=1.0)


# -- top-k ---------------------------------------------------------------------------------------


def test_soft_topk_matches_the_entropy_regularised_lp_solved_by_cvxpy():
    generator = torch.Generator().manual_seed(9)
    scores = torch.randn(50, 8, generator=generator, dtype=torch.float64)
    k, temperature = 3, 0.5
    ours = soft_topk(scores, k, temperature)
    for row in range(50):
        z = cp.Variable(8)
        entropy = cp.sum(cp.entr(z) + cp.entr(1 - z))
        problem = cp.Problem(
            cp.Maximize(scores[row].numpy() @ z + temperature * entropy), [cp.sum(z) == k]
        )
        _clarabel(problem)
        np.testing.assert_allclose(ours[row].numpy(), z.value, atol=1e-4)


def test_soft_topk_tends_to_hard_topk_as_the_temperature_vanishes():
    generator = torch.Generator().manual_seed(10)
    scores = torch.randn(64, 20, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(soft_topk(scores, 4, 1e-4), hard_topk(scores, 4), atol=1e-3, rtol=0)
