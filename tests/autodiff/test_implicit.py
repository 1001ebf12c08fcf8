"""implicit_hypergradient against closed forms and finite differences through inner problems
solved to convergence.

Quadratic case: f(θ, φ) = ½θᵀAθ − θᵀBφ with A SPD, so θ*(φ) = A⁻¹Bφ, and
F(θ, φ) = ½‖θ − t‖² + c‖φ‖², whose total derivative is dF/dφ = Bᵀ A⁻¹ (θ* − t) + 2cφ.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor
from torch.nn import functional as F

from twcore.autodiff import implicit_hypergradient

F64 = torch.float64
SOLVERS = ["cg", "normal_cg", "exact"]


@dataclass
class Quadratic:
    a: Tensor  # [n, n], symmetric
    b: Tensor  # [n, m]
    target: Tensor  # [n]
    c: float

    def inner(self, theta: Tensor, phi: Tensor) -> Tensor:
        return 0.5 * theta @ self.a @ theta - theta @ self.b @ phi

    def outer(self, theta: Tensor, phi: Tensor) -> Tensor:
        return 0.5 * ((theta - self.target) ** 2).sum() + self.c * (phi**2).sum()

    def minimiser(self, phi: Tensor) -> Tensor:
        return torch.linalg.solve(self.a, self.b @ phi)

    def closed_form(self, phi: Tensor, ridge: float = 0.0) -> Tensor:
        """Bᵀ (A + ridge·I)⁻¹ (θ* − t) + 2cφ at the exact minimiser θ*."""
        damped = self.a + ridge * torch.eye(self.a.shape[0], dtype=F64)
        implicit = self.b.T @ torch.linalg.solve(damped, self.minimiser(phi) - self.target)
        return implicit + 2 * self.c * phi

    def hypergradient(self, theta: Tensor, phi: Tensor, **kwargs: object) -> Tensor:
        theta = theta.detach().clone().requires_grad_()
        phi = phi.detach().clone().requires_grad_()
        (result,) = implicit_hypergradient(
            self.inner(theta, phi), self.outer(theta, phi), [theta], [phi], **kwargs
        )
        return result


def make_quadratic(n: int = 5, m: int = 3, seed: int = 0) -> tuple[Quadratic, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    factor = torch.randn(n, n, generator=generator, dtype=F64)
    problem = Quadratic(
        a=factor @ factor.T + n * torch.eye(n, dtype=F64),
        b=torch.randn(n, m, generator=generator, dtype=F64),
        target=torch.randn(n, generator=generator, dtype=F64),
        c=0.7,
    )
    return problem, torch.randn(m, generator=generator, dtype=F64)


@pytest.mark.parametrize("solver", SOLVERS)
def test_quadratic_matches_closed_form_total_derivative(solver: str) -> None:
    problem, phi = make_quadratic()
    dim = problem.a.shape[0]
    result = problem.hypergradient(problem.minimiser(phi), phi, solver=solver, iters=dim, ridge=0.0)
    torch.testing.assert_close(result, problem.closed_form(phi), rtol=1e-9, atol=1e-10)


def test_exact_and_cg_agree_with_default_ridge() -> None:
    problem, phi = make_quadratic(n=8, m=4, seed=1)
    theta = problem.minimiser(phi)
    exact = problem.hypergradient(theta, phi, solver="exact")
    cg = problem.hypergradient(theta, phi, solver="cg", iters=8)
    torch.testing.assert_close(cg, exact, rtol=1e-9, atol=1e-10)


def gradient_descent_minimiser(problem: Quadratic, phi: Tensor) -> Tensor:
    """θ*(φ) by plain gradient descent run until the inner gradient vanishes."""
    step = 1.0 / torch.linalg.eigvalsh(problem.a).max()
    theta = torch.zeros(problem.a.shape[0], dtype=F64)
    for _ in range(5000):
        gradient = problem.a @ theta - problem.b @ phi
        if torch.linalg.vector_norm(gradient) < 1e-13:
            break
        theta = theta - step * gradient
    assert torch.linalg.vector_norm(problem.a @ theta - problem.b @ phi) < 1e-12
    return theta


@pytest.mark.parametrize("solver", SOLVERS)
def test_quadratic_matches_finite_differences_through_converged_inner_optimiser(
    solver: str,
) -> None:
    problem, phi = make_quadratic(seed=2)

    def outer_at_optimum(phi_value: Tensor) -> float:
        return problem.outer(gradient_descent_minimiser(problem, phi_value), phi_value).item()

    step = 1e-5
    expected = torch.empty_like(phi)
    for i in range(phi.shape[0]):
        shift = torch.zeros_like(phi)
        shift[i] = step
        expected[i] = (outer_at_optimum(phi + shift) - outer_at_optimum(phi - shift)) / (2 * step)
    result = problem.hypergradient(
        gradient_descent_minimiser(problem, phi), phi, solver=solver, iters=5, ridge=0.0
    )
    torch.testing.assert_close(result, expected, rtol=1e-6, atol=1e-8)


@dataclass
class WeightedLogisticRegression:
    """Inner: per-example-weighted logistic loss + ridge; outer: validation logistic loss."""

    x_train: Tensor  # [N, D]
    y_train: Tensor  # [N], ±1
    x_val: Tensor
    y_val: Tensor
    l2: float

    def inner(self, theta: Tensor, weights: Tensor) -> Tensor:
        margins = self.y_train * (self.x_train @ theta)
        weighted = (weights * F.softplus(-margins)).mean()
        return weighted + 0.5 * self.l2 * (theta**2).sum()

    def outer(self, theta: Tensor) -> Tensor:
        return F.softplus(-self.y_val * (self.x_val @ theta)).mean()

    def newton_minimiser(self, weights: Tensor) -> Tensor:
        """θ* by Newton's method with the analytic gradient and Hessian, to machine precision."""
        count, dim = self.x_train.shape
        theta = torch.zeros(dim, dtype=F64)
        for _ in range(50):
            prob = torch.sigmoid(-self.y_train * (self.x_train @ theta))
            gradient = -(weights * prob * self.y_train) @ self.x_train / count + self.l2 * theta
            if torch.linalg.vector_norm(gradient) < 1e-14:
                break
            curvature = weights * prob * (1 - prob) / count
            hessian = self.x_train.T @ (curvature[:, None] * self.x_train)
            hessian = hessian + self.l2 * torch.eye(dim, dtype=F64)
            theta = theta - torch.linalg.solve(hessian, gradient)
        assert torch.linalg.vector_norm(gradient) < 1e-12
        return theta


def make_logistic(num_train: int = 24, dim: int = 3) -> tuple[WeightedLogisticRegression, Tensor]:
    generator = torch.Generator().manual_seed(3)
    true_theta = torch.randn(dim, generator=generator, dtype=F64)

    def sample(count: int) -> tuple[Tensor, Tensor]:
        x = torch.randn(count, dim, generator=generator, dtype=F64)
        noise = 0.5 * torch.randn(count, generator=generator, dtype=F64)
        return x, torch.sign(x @ true_theta + noise)

    x_train, y_train = sample(num_train)
    x_val, y_val = sample(16)
    weights = 0.5 + torch.rand(num_train, generator=generator, dtype=F64)
    return WeightedLogisticRegression(x_train, y_train, x_val, y_val, l2=0.1), weights


@pytest.mark.parametrize("solver", SOLVERS)
def test_weighted_logistic_regression_matches_finite_differences(solver: str) -> None:
    problem, weights = make_logistic()
    dim = problem.x_train.shape[1]

    def outer_at_optimum(weight_values: Tensor) -> float:
        return problem.outer(problem.newton_minimiser(weight_values)).item()

    step = 1e-5
    expected = torch.empty_like(weights)
    for i in range(weights.shape[0]):
        shift = torch.zeros_like(weights)
        shift[i] = step
        up, down = outer_at_optimum(weights + shift), outer_at_optimum(weights - shift)
        expected[i] = (up - down) / (2 * step)

    theta = problem.newton_minimiser(weights).requires_grad_()
    phi = weights.clone().requires_grad_()
    (result,) = implicit_hypergradient(
        problem.inner(theta, phi),
        problem.outer(theta),
        [theta],
        [phi],
        solver=solver,
        iters=2 * dim,
        ridge=0.0,
    )
    scale = expected.abs().max()
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-5 * scale.item())


@pytest.mark.parametrize("solver", SOLVERS)
def test_ridge_matches_closed_form_with_damped_hessian(solver: str) -> None:
    problem, phi = make_quadratic(seed=4)
    theta = problem.minimiser(phi)
    dim = problem.a.shape[0]
    for ridge in (0.5, 3.0):
        result = problem.hypergradient(theta, phi, solver=solver, iters=dim, ridge=ridge)
        torch.testing.assert_close(
            result, problem.closed_form(phi, ridge=ridge), rtol=1e-9, atol=1e-10
        )
        assert not torch.allclose(result, problem.closed_form(phi), rtol=1e-4, atol=0)


def test_ridge_shrinks_the_implicit_term() -> None:
    # With B = I the implicit term is (A + ridge·I)⁻¹ (θ* − t), whose norm falls as ridge grows.
    problem, _ = make_quadratic(n=4, m=4, seed=5)
    problem.b = torch.eye(4, dtype=F64)
    phi = torch.randn(4, generator=torch.Generator().manual_seed(6), dtype=F64)
    theta = problem.minimiser(phi)
    norms = []
    for ridge in (0.0, 0.5, 2.0, 10.0):
        result = problem.hypergradient(theta, phi, solver="exact", ridge=ridge)
        norms.append(torch.linalg.vector_norm(result - 2 * problem.c * phi).item())
    assert norms == sorted(norms, reverse=True)
    assert norms[-1] < 0.7 * norms[0]


def test_normal_cg_matches_exact_when_hessian_is_indefinite() -> None:
    # Away from a minimum the Hessian can be indefinite: plain CG is not guaranteed to work
    # there, CG on the normal equations is.
    problem, phi = make_quadratic(n=4, m=2, seed=7)
    problem.a = torch.diag(torch.tensor([2.0, -1.0, 1.5, -3.0], dtype=F64))
    theta = torch.randn(4, generator=torch.Generator().manual_seed(8), dtype=F64)
    exact = problem.hypergradient(theta, phi, solver="exact", ridge=0.0)
    normal = problem.hypergradient(theta, phi, solver="normal_cg", iters=8, ridge=0.0)
    torch.testing.assert_close(normal, exact, rtol=1e-9, atol=1e-10)
    expected_q = torch.linalg.solve(problem.a, theta - problem.target)
    torch.testing.assert_close(exact, 2 * problem.c * phi + problem.b.T @ expected_q)


@pytest.mark.parametrize("solver", SOLVERS)
def test_unused_outer_params_get_zeros_and_graphs_are_retained(solver: str) -> None:
    problem, phi_value = make_quadratic()
    theta = problem.minimiser(phi_value).requires_grad_()
    phi = phi_value.clone().requires_grad_()
    unused = torch.randn(2, 2, dtype=F64, requires_grad=True)
    inner, outer = problem.inner(theta, phi), problem.outer(theta, phi)
    result_phi, result_unused = implicit_hypergradient(
        inner, outer, [theta], [phi, unused], solver=solver, iters=5, ridge=0.0
    )
    torch.testing.assert_close(result_phi, problem.closed_form(phi_value))
    assert torch.equal(result_unused, torch.zeros(2, 2, dtype=F64))
    assert not result_phi.requires_grad
    (inner + outer).backward()
    assert theta.grad is not None and phi.grad is not None


def test_outer_loss_independent_of_inner_params_gives_direct_partial() -> None:
    problem, phi_value = make_quadratic()
    theta = problem.minimiser(phi_value).requires_grad_()
    phi = phi_value.clone().requires_grad_()
    (result,) = implicit_hypergradient(
        problem.inner(theta, phi), (phi**3).sum(), [theta], [phi], solver="cg"
    )
    torch.testing.assert_close(result, 3 * phi_value**2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"solver": "newton"}, "valid solvers"),
        ({"iters": 0}, "iters"),
        ({"ridge": -1e-3}, "ridge"),
        ({"ridge": float("nan")}, "ridge"),
    ],
)
def test_rejects_invalid_arguments(kwargs: dict[str, object], message: str) -> None:
    theta = torch.ones(2, requires_grad=True)
    phi = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match=message):
        implicit_hypergradient(
            (theta * phi).sum(),
            theta.sum(),
            [theta],
            [phi],
            **kwargs,  # type: ignore[arg-type]
        )
