"""conjugate_gradient against torch.linalg.solve, and hessian_vector_product against an explicit
Hessian."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from twcore.autodiff import conjugate_gradient, flatten_tensors, hessian_vector_product

F64 = torch.float64


def random_spd(dim: int, seed: int = 0) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    factor = torch.randn(dim, dim, generator=generator, dtype=F64)
    return factor @ factor.T + dim * torch.eye(dim, dtype=F64)


class CountingMatvec:
    """Matrix-vector product that counts its calls."""

    def __init__(self, matrix: Tensor) -> None:
        self.matrix = matrix
        self.calls = 0

    def __call__(self, vector: Tensor) -> Tensor:
        self.calls += 1
        return self.matrix @ vector


def test_solves_random_spd_system_to_high_precision() -> None:
    matrix = random_spd(10)
    rhs = torch.randn(10, generator=torch.Generator().manual_seed(1), dtype=F64)
    solution = conjugate_gradient(lambda v: matrix @ v, rhs, iters=30)
    torch.testing.assert_close(solution, torch.linalg.solve(matrix, rhs), rtol=0, atol=1e-8)
    assert torch.linalg.vector_norm(matrix @ solution - rhs) < 1e-8


def test_converges_in_at_most_dim_iterations() -> None:
    matrix = random_spd(10)
    rhs = torch.randn(10, generator=torch.Generator().manual_seed(2), dtype=F64)
    solution = conjugate_gradient(lambda v: matrix @ v, rhs, iters=10)
    torch.testing.assert_close(solution, torch.linalg.solve(matrix, rhs), rtol=0, atol=1e-8)


def test_without_tol_runs_exactly_iters_matvecs() -> None:
    matvec = CountingMatvec(random_spd(6))
    conjugate_gradient(matvec, torch.ones(6, dtype=F64), iters=17)
    assert matvec.calls == 17


def test_stops_early_once_residual_is_below_tol() -> None:
    matrix = random_spd(10)
    rhs = torch.randn(10, generator=torch.Generator().manual_seed(3), dtype=F64)
    matvec = CountingMatvec(matrix)
    tol = 1e-3
    solution = conjugate_gradient(matvec, rhs, iters=50, tol=tol)
    assert matvec.calls < 10
    residual = torch.linalg.vector_norm(matrix @ solution - rhs)
    assert residual <= tol * torch.linalg.vector_norm(rhs)
    # One iteration fewer would not have met the tolerance: the stop is not premature.
    shorter = conjugate_gradient(lambda v: matrix @ v, rhs, iters=matvec.calls - 1)
    assert torch.linalg.vector_norm(matrix @ shorter - rhs) > tol * torch.linalg.vector_norm(rhs)


def test_tol_zero_needs_no_host_sync() -> None:
    # Meta tensors have no values: any .item()/bool() on them raises, so this passes only if
    # the loop never reads a number back to Python.
    rhs = torch.ones(5, device="meta")
    solution = conjugate_gradient(lambda v: 2 * v, rhs, iters=4)
    assert solution.shape == (5,)
    with pytest.raises(RuntimeError):
        conjugate_gradient(lambda v: 2 * v, rhs, iters=4, tol=1e-3)


def test_zero_rhs_gives_zero_solution_without_nan() -> None:
    matrix = random_spd(4)
    for tol in (0.0, 1e-6):
        solution = conjugate_gradient(
            lambda v: matrix @ v, torch.zeros(4, dtype=F64), iters=8, tol=tol
        )
        assert torch.equal(solution, torch.zeros(4, dtype=F64))


def test_iterating_past_convergence_stays_finite_and_exact() -> None:
    matrix = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=F64))
    rhs = torch.tensor([1.0, 1.0, 1.0], dtype=F64)
    solution = conjugate_gradient(lambda v: matrix @ v, rhs, iters=100)
    torch.testing.assert_close(solution, torch.tensor([1.0, 0.5, 1 / 3], dtype=F64))


def test_semidefinite_consistent_system_gives_minimum_norm_solution() -> None:
    matrix = torch.diag(torch.tensor([2.0, 1.0, 0.0], dtype=F64))
    solution = conjugate_gradient(
        lambda v: matrix @ v, torch.tensor([2.0, 1.0, 0.0], dtype=F64), iters=10
    )
    torch.testing.assert_close(solution, torch.tensor([1.0, 1.0, 0.0], dtype=F64))


def test_conjugate_gradient_validates_arguments() -> None:
    with pytest.raises(ValueError, match="iters"):
        conjugate_gradient(lambda v: v, torch.ones(3), iters=0)
    with pytest.raises(ValueError, match=r"\[P\]"):
        conjugate_gradient(lambda v: v, torch.ones(3, 1), iters=2)
    with pytest.raises(ValueError, match="tol"):
        conjugate_gradient(lambda v: v, torch.ones(3), iters=2, tol=-1.0)


def scalar_function(a: Tensor, b: Tensor) -> Tensor:
    return (a**2 * b.sum()).sum() + torch.sin(a).prod() + (b**3).sum() + a.sum()


def test_hessian_vector_product_matches_explicit_hessian() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(2, 2, generator=generator, dtype=F64, requires_grad=True)
    b = torch.randn(3, generator=generator, dtype=F64, requires_grad=True)
    grads = torch.autograd.grad(scalar_function(a, b), [a, b], create_graph=True)

    def on_flat(flat: Tensor) -> Tensor:
        return scalar_function(flat[:4].reshape(2, 2), flat[4:])

    point = flatten_tensors([a, b]).detach()
    hessian = torch.autograd.functional.hessian(on_flat, point)
    for seed in range(3):
        vector = torch.randn(7, generator=torch.Generator().manual_seed(seed), dtype=F64)
        product = hessian_vector_product(grads, [a, b], vector)
        torch.testing.assert_close(product, hessian @ vector)


def test_hessian_vector_product_treats_none_and_constant_gradients_as_zero() -> None:
    a = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    b = torch.tensor([3.0], dtype=F64, requires_grad=True)
    c = torch.tensor([0.5], dtype=F64, requires_grad=True)
    # Loss (a·a) + 4b: b's gradient is the constant 4, c is unused.
    grads = torch.autograd.grad(
        (a * a).sum() + 4 * b.sum(), [a, b, c], create_graph=True, allow_unused=True
    )
    assert grads[2] is None
    assert not grads[1].requires_grad
    vector = torch.tensor([1.0, -1.0, 5.0, 7.0], dtype=F64)
    product = hessian_vector_product(grads, [a, b, c], vector)
    torch.testing.assert_close(product, torch.tensor([2.0, -2.0, 0.0, 0.0], dtype=F64))
    # Only constant gradients: no graph at all, still zeros.
    assert torch.equal(
        hessian_vector_product([grads[1]], [b], torch.ones(1, dtype=F64)), torch.zeros(1, dtype=F64)
    )
