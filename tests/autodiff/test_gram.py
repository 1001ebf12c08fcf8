"""Gram and cosine matrices against explicit pairwise computation, and their zero-safety."""

from __future__ import annotations

import math

import pytest
import torch

from twcore.autodiff import cosine_matrix, cosine_to, gram_matrix, normalize_rows


def random_grads(rows: int = 4, cols: int = 7) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def python_dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def python_cosine(a: list[float], b: list[float]) -> float:
    norm_a, norm_b = math.sqrt(python_dot(a, a)), math.sqrt(python_dot(b, b))
    if norm_a == 0 or norm_b == 0:
        return 0.0
    return python_dot(a, b) / (norm_a * norm_b)


def test_gram_matrix_matches_pairwise_dot_products() -> None:
    grads = random_grads()
    rows = grads.tolist()
    expected = torch.tensor([[python_dot(a, b) for b in rows] for a in rows], dtype=torch.float64)
    torch.testing.assert_close(gram_matrix(grads), expected)


def test_cosine_matrix_matches_pairwise_cosines() -> None:
    grads = random_grads()
    rows = grads.tolist()
    expected = torch.tensor(
        [[python_cosine(a, b) for b in rows] for a in rows], dtype=torch.float64
    )
    torch.testing.assert_close(cosine_matrix(grads), expected)


def test_cosine_of_orthogonal_identical_and_opposite_rows() -> None:
    grads = torch.tensor([[1.0, 2.0, 0.0], [-2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [-3.0, -6.0, 0.0]])
    cosines = cosine_matrix(grads)
    assert cosines[0, 1].item() == pytest.approx(0.0, abs=1e-7)
    assert cosines[0, 2].item() == pytest.approx(1.0)
    assert cosines[0, 3].item() == pytest.approx(-1.0)
    torch.testing.assert_close(cosines.diagonal(), torch.ones(4))
    torch.testing.assert_close(cosines, cosines.T)


def test_zero_row_has_cosine_zero_with_everything_and_zero_gradients() -> None:
    grads = random_grads(3, 5)
    grads[1] = 0.0
    grads.requires_grad_()
    cosines = cosine_matrix(grads)
    assert not torch.isnan(cosines).any()
    assert torch.equal(cosines[1], torch.zeros(3, dtype=torch.float64))
    assert torch.equal(cosines[:, 1], torch.zeros(3, dtype=torch.float64))
    cosines.sum().backward()
    assert torch.isfinite(grads.grad).all()


def test_all_zero_grads_give_zero_cosines() -> None:
    assert torch.equal(cosine_matrix(torch.zeros(3, 4)), torch.zeros(3, 3))


def test_cosine_to_matches_pairwise_cosines() -> None:
    grads = random_grads(5, 7)
    reference, others = grads[0], grads[1:]
    expected = torch.tensor(
        [python_cosine(reference.tolist(), row) for row in others.tolist()], dtype=torch.float64
    )
    torch.testing.assert_close(cosine_to(reference, others), expected)


def test_cosine_to_is_zero_safe_for_zero_reference_and_zero_rows() -> None:
    others = random_grads(3, 4)
    others[2] = 0.0
    zero_reference = torch.zeros(4, dtype=torch.float64)
    assert torch.equal(cosine_to(zero_reference, others), torch.zeros(3, dtype=torch.float64))
    cosines = cosine_to(others[0], others)
    assert cosines[2].item() == 0.0
    assert cosines[0].item() == pytest.approx(1.0)


def test_cosine_to_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="columns"):
        cosine_to(torch.ones(3), torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"\[P\]"):
        cosine_to(torch.ones(1, 3), torch.ones(2, 3))


def test_normalize_rows_gives_unit_norms_and_keeps_zero_rows_zero() -> None:
    grads = random_grads(4, 6) * torch.tensor([[1e-3], [1.0], [0.0], [1e4]], dtype=torch.float64)
    unit = normalize_rows(grads)
    norms = torch.linalg.vector_norm(unit, dim=1)
    torch.testing.assert_close(norms[[0, 1, 3]], torch.ones(3, dtype=torch.float64))
    assert torch.equal(unit[2], torch.zeros(6, dtype=torch.float64))
    # Direction is preserved: each nonzero row is a positive multiple of the original.
    for k in (0, 1, 3):
        ratio = unit[k] / grads[k]
        torch.testing.assert_close(ratio, ratio[0].expand_as(ratio))
        assert ratio[0] > 0


def test_gram_rejects_non_matrix_input() -> None:
    with pytest.raises(ValueError, match=r"\[K, P\]"):
        gram_matrix(torch.ones(3))
