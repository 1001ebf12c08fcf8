"""The test kit's lookahead (``twcore.testing.lookahead``): sgd_lookahead against a manual SGD
step and finite-difference meta-gradients; functional_forward against the module evaluated with
loaded parameters."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from twcore.testing.lookahead import commit_lookahead, functional_forward, sgd_lookahead

F64 = torch.float64


def make_problem() -> tuple[nn.Module, Tensor, Tensor, Tensor, Tensor]:
    """A tiny float64 regressor with train (x, y) and validation (x, y) data."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    x_train, x_val = torch.randn(8, 3, dtype=F64), torch.randn(6, 3, dtype=F64)
    y_train, y_val = torch.randn(8, 1, dtype=F64), torch.randn(6, 1, dtype=F64)
    return model, x_train, y_train, x_val, y_val


def central_difference(function: Callable[[float], float], at: float, step: float = 1e-6) -> float:
    return (function(at + step) - function(at - step)) / (2 * step)


def test_equals_manual_sgd_step_for_float_and_tensor_lr() -> None:
    model, x, y, _, _ = make_problem()
    params = dict(model.named_parameters())
    loss = ((model(x) - y) ** 2).mean()
    grads = torch.autograd.grad(loss, list(params.values()), retain_graph=True)
    for lr in (0.3, torch.tensor(0.3, dtype=F64)):
        stepped = sgd_lookahead(params, loss, lr)
        assert stepped.keys() == params.keys()
        for (name, param), grad in zip(params.items(), grads, strict=True):
            torch.testing.assert_close(stepped[name], param - 0.3 * grad)


def test_leaves_the_module_parameters_untouched() -> None:
    model, x, y, _, _ = make_problem()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    sgd_lookahead(dict(model.named_parameters()), ((model(x) - y) ** 2).mean(), 0.5)
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name])


def test_unreached_and_frozen_parameters_are_returned_unchanged() -> None:
    used = torch.randn(3, requires_grad=True)
    unreached = torch.randn(2, requires_grad=True)
    frozen = torch.randn(4)
    params = {"used": used, "unreached": unreached, "frozen": frozen}
    stepped = sgd_lookahead(params, (used**2).sum(), 0.1)
    assert stepped["unreached"] is unreached
    assert stepped["frozen"] is frozen
    torch.testing.assert_close(stepped["used"], used - 0.1 * 2 * used)


def test_meta_gradient_of_inner_loss_weight_matches_finite_differences() -> None:
    model, x, y, x_val, y_val = make_problem()
    params = dict(model.named_parameters())

    def outer_after_step(weight: Tensor, create_graph: bool) -> Tensor:
        inner = weight * ((model(x) - y) ** 2).mean()
        stepped = sgd_lookahead(params, inner, 0.2, create_graph=create_graph)
        return ((functional_forward(model, stepped, x_val) - y_val) ** 2).mean()

    weight = torch.tensor(1.3, dtype=F64, requires_grad=True)
    (meta_grad,) = torch.autograd.grad(outer_after_step(weight, True), weight)

    def value(w: float) -> float:
        return outer_after_step(torch.tensor(w, dtype=F64), False).item()

    assert meta_grad.item() == pytest.approx(central_difference(value, 1.3), rel=1e-6, abs=1e-9)


def test_meta_gradient_of_learned_loss_parameters_matches_finite_differences() -> None:
    model, x, y, x_val, y_val = make_problem()
    params = dict(model.named_parameters())

    def learned_loss(residual: Tensor, phi: Tensor) -> Tensor:
        # A two-parameter loss family standing in for a learned loss network.
        return (torch.exp(phi[0]) * residual**2 + phi[1] * torch.tanh(residual) ** 4).mean()

    def outer_after_step(phi: Tensor) -> Tensor:
        stepped = sgd_lookahead(params, learned_loss(model(x) - y, phi), 0.2)
        return ((functional_forward(model, stepped, x_val) - y_val) ** 2).mean()

    phi = torch.tensor([0.1, 0.5], dtype=F64, requires_grad=True)
    (meta_grad,) = torch.autograd.grad(outer_after_step(phi), phi)
    for i in range(2):

        def value(v: float, i: int = i) -> float:
            shifted = phi.detach().clone()
            shifted[i] = v
            return outer_after_step(shifted).item()

        expected = central_difference(value, phi[i].item())
        assert meta_grad[i].item() == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_meta_gradient_of_tensor_lr_matches_finite_differences() -> None:
    model, x, y, x_val, y_val = make_problem()
    params = dict(model.named_parameters())

    def outer_after_step(lr: Tensor, create_graph: bool) -> Tensor:
        inner = ((model(x) - y) ** 2).mean()
        stepped = sgd_lookahead(params, inner, lr, create_graph=create_graph)
        return ((functional_forward(model, stepped, x_val) - y_val) ** 2).mean()

    lr = torch.tensor(0.15, dtype=F64, requires_grad=True)
    (lr_grad,) = torch.autograd.grad(outer_after_step(lr, True), lr)

    def value(v: float) -> float:
        return outer_after_step(torch.tensor(v, dtype=F64), False).item()

    assert lr_grad.item() == pytest.approx(central_difference(value, 0.15), rel=1e-6, abs=1e-9)


def test_without_create_graph_the_step_is_first_order() -> None:
    model, x, y, x_val, y_val = make_problem()
    weight = torch.tensor(2.0, dtype=F64, requires_grad=True)
    lr = torch.tensor(0.1, dtype=F64, requires_grad=True)
    inner = weight * ((model(x) - y) ** 2).mean()
    stepped = sgd_lookahead(dict(model.named_parameters()), inner, lr, create_graph=False)
    outer = ((functional_forward(model, stepped, x_val) - y_val) ** 2).mean()
    weight_grad, lr_grad = torch.autograd.grad(outer, [weight, lr], allow_unused=True)
    assert weight_grad is None
    assert lr_grad is not None


def test_rejects_non_scalar_loss() -> None:
    w = torch.randn(3, requires_grad=True)
    with pytest.raises(ValueError, match="scalar"):
        sgd_lookahead({"w": w}, w * 2, 0.1)


class ScaledNet(nn.Module):
    """Linear -> BatchNorm (buffers) -> Linear, with a keyword argument in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(3, 4)
        self.norm = nn.BatchNorm1d(4)
        self.second = nn.Linear(4, 2)

    def forward(self, x: Tensor, *, scale: float = 1.0) -> Tensor:
        return scale * self.second(self.norm(self.first(x)))


def test_functional_forward_with_lookahead_params_equals_module_with_loaded_params() -> None:
    torch.manual_seed(0)
    model = ScaledNet().double()
    with torch.no_grad():
        # Non-default running statistics: they must come from the module's buffers.
        model.norm.running_mean.uniform_(-1.0, 1.0)
        model.norm.running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.randn(5, 3, dtype=F64)
    loss = model(x).pow(2).mean()
    stepped = sgd_lookahead(dict(model.named_parameters()), loss, 0.3)

    loaded = copy.deepcopy(model)
    with torch.no_grad():
        for name, param in loaded.named_parameters():
            param.copy_(stepped[name])
    expected = loaded(x, scale=2.0)
    actual = functional_forward(model, stepped, x, scale=2.0)
    torch.testing.assert_close(actual, expected)
    assert not torch.allclose(actual, model(x, scale=2.0))


def test_commit_lookahead_copies_the_stepped_parameters_into_the_module():
    module = torch.nn.Linear(3, 2)
    params = dict(module.named_parameters())
    loss = module(torch.ones(4, 3)).square().sum()
    ahead = sgd_lookahead(params, loss, 0.1)
    expected = {name: value.detach().clone() for name, value in ahead.items()}
    commit_lookahead(module, ahead)
    for name, parameter in module.named_parameters():
        assert torch.equal(parameter.detach(), expected[name])
        assert parameter.grad_fn is None and parameter.requires_grad
