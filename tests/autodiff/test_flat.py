"""Flat vectors <-> per-parameter tensors, and writing flat gradients into ``.grad``."""

from __future__ import annotations

import pytest
import torch

from twcore.autodiff import assign_flat_grad, flatten_tensors, unflatten_like, write_flat_grad

SHAPES = [(2, 3), (4,), (), (1, 2, 2)]


def make_tensors() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=generator) for shape in SHAPES]


def test_flatten_concatenates_in_order_with_total_length() -> None:
    tensors = make_tensors()
    flat = flatten_tensors(tensors)
    assert flat.shape == (6 + 4 + 1 + 4,)
    expected = [value for tensor in tensors for value in tensor.reshape(-1).tolist()]
    assert flat.tolist() == expected


def test_unflatten_inverts_flatten() -> None:
    tensors = make_tensors()
    pieces = unflatten_like(flatten_tensors(tensors), tensors)
    assert len(pieces) == len(tensors)
    for piece, tensor in zip(pieces, tensors, strict=True):
        assert piece.shape == tensor.shape
        assert torch.equal(piece, tensor)


def test_unflatten_with_leading_batch_dim_gives_batched_shapes() -> None:
    tensors = make_tensors()
    rows = [flatten_tensors([t * k for t in tensors]) for k in range(3)]
    pieces = unflatten_like(torch.stack(rows), tensors)
    for piece, tensor in zip(pieces, tensors, strict=True):
        assert piece.shape == (3, *tensor.shape)
        for k in range(3):
            assert torch.equal(piece[k], tensor * k)


def test_unflatten_rejects_wrong_length_and_rank() -> None:
    tensors = make_tensors()
    with pytest.raises(ValueError, match="elements"):
        unflatten_like(torch.zeros(14), tensors)
    with pytest.raises(ValueError, match=r"\[P\] or \[K, P\]"):
        unflatten_like(torch.zeros(2, 3, 15), tensors)


def test_flatten_is_differentiable() -> None:
    a = torch.randn(2, 2, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    weights = torch.arange(7.0)
    (flatten_tensors([a, b]) @ weights).backward()
    assert torch.equal(a.grad, weights[:4].reshape(2, 2))
    assert torch.equal(b.grad, weights[4:])


def test_write_flat_grad_sets_missing_grads_and_round_trips() -> None:
    params = [torch.nn.Parameter(t) for t in make_tensors()]
    flat = torch.randn(15)
    write_flat_grad(params, flat)
    assert torch.equal(flatten_tensors([p.grad for p in params]), flat)
    for param in params:
        assert param.grad.shape == param.shape
        assert not param.grad.requires_grad


def test_write_flat_grad_replaces_existing_grads() -> None:
    params = [torch.nn.Parameter(t) for t in make_tensors()]
    for param in params:
        param.grad = torch.full_like(param, 5.0)
    flat = torch.randn(15)
    write_flat_grad(params, flat)
    assert torch.equal(flatten_tensors([p.grad for p in params]), flat)


def test_write_flat_grad_accumulates_onto_existing_and_missing_grads() -> None:
    params = [torch.nn.Parameter(t) for t in make_tensors()]
    params[0].grad = torch.ones_like(params[0])
    flat = torch.randn(15)
    write_flat_grad(params, flat, accumulate=True)
    expected = flat.clone()
    expected[:6] += 1.0
    assert torch.allclose(flatten_tensors([p.grad for p in params]), expected)
    write_flat_grad(params, flat, accumulate=True)
    assert torch.allclose(flatten_tensors([p.grad for p in params]), expected + flat)


def test_written_grads_do_not_alias_the_flat_vector() -> None:
    params = [torch.nn.Parameter(t) for t in make_tensors()]
    flat = torch.randn(15)
    write_flat_grad(params, flat)
    snapshot = flat.clone()
    flat.zero_()
    assert torch.equal(flatten_tensors([p.grad for p in params]), snapshot)


def test_write_flat_grad_drives_an_optimizer_step() -> None:
    model = torch.nn.Linear(3, 2)
    params = list(model.parameters())
    before = flatten_tensors(params).detach().clone()
    flat = torch.randn(8)
    write_flat_grad(params, flat)
    torch.optim.SGD(params, lr=0.5).step()
    assert torch.allclose(flatten_tensors(params).detach(), before - 0.5 * flat)


def test_write_flat_grad_rejects_batched_input() -> None:
    params = [torch.nn.Parameter(t) for t in make_tensors()]
    with pytest.raises(ValueError, match=r"\[P\]"):
        write_flat_grad(params, torch.zeros(2, 15))


def test_assign_flat_grad_gives_views_that_drive_an_optimizer_step() -> None:
    model = torch.nn.Linear(3, 2)
    params = list(model.parameters())
    before = flatten_tensors(params).detach().clone()
    flat = torch.randn(8)
    assign_flat_grad(params, flat)
    assert all(p.grad.shape == p.shape for p in params)
    assert params[0].grad.data_ptr() == flat.data_ptr()  # a view: nothing copied
    torch.optim.Adam(params, lr=0.5).step()
    torch.optim.SGD(params, lr=0.5).step()
    assert torch.equal(flatten_tensors([p.grad for p in params]), flat)
    assert not torch.allclose(flatten_tensors(params).detach(), before)


def test_assign_flat_grad_rejects_batched_input_and_a_wrong_dtype() -> None:
    params = [torch.nn.Parameter(t) for t in make_tensors()]
    with pytest.raises(ValueError, match=r"\[P\]"):
        assign_flat_grad(params, torch.zeros(2, 15))
    with pytest.raises(ValueError, match="dtype"):
        assign_flat_grad(params, torch.zeros(15, dtype=torch.float64))
