"""The differentiable lookahead equals the step the optimiser then takes, for every optimiser
the core offers, and its derivative matches finite differences."""

from __future__ import annotations

import pytest
import torch

from twcore.autodiff import optimizer_lookahead

SETTINGS = [
    (torch.optim.SGD, {"lr": 0.1}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.5, "dampening": 0.3}),
    (torch.optim.Adam, {"lr": 0.01}),
    (torch.optim.Adam, {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    (torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
    (torch.optim.RMSprop, {"lr": 0.01}),
    (torch.optim.RMSprop, {"lr": 0.01, "momentum": 0.9, "centered": True, "weight_decay": 0.1}),
]


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    return model.double()


def _loss(model: torch.nn.Module, step: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(step)
    inputs = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    return model(inputs).pow(2).sum()


@pytest.mark.parametrize(("optimizer_class", "options"), SETTINGS)
@pytest.mark.parametrize("grad_clip", [None, 0.5])
def test_lookahead_equals_the_next_optimizer_step(optimizer_class, options, grad_clip) -> None:
    model = _model()
    optimizer = optimizer_class(model.parameters(), **options)
    params = dict(model.named_parameters())
    for step in range(4):  # from a fresh state, then with running averages
        grads = dict(
            zip(params, torch.autograd.grad(_loss(model, step), list(params.values())), strict=True)
        )
        ahead = optimizer_lookahead(optimizer, params, grads, grad_clip=grad_clip)
        for name, parameter in params.items():
            parameter.grad = grads[name].clone()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        for name, parameter in params.items():
            torch.testing.assert_close(ahead[name], parameter.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("optimizer_class", "options"), SETTINGS[1::2])
def test_lookahead_derivative_matches_finite_differences(optimizer_class, options) -> None:
    model = _model()
    optimizer = optimizer_class(model.parameters(), **options)
    params = dict(model.named_parameters())
    for step in range(2):  # build up optimiser state
        model.zero_grad()
        _loss(model, step).backward()
        optimizer.step()
    generator = torch.Generator().manual_seed(9)
    base = {
        n: torch.randn(p.shape, generator=generator, dtype=torch.float64) for n, p in params.items()
    }
    direction = {
        n: torch.randn(p.shape, generator=generator, dtype=torch.float64) for n, p in params.items()
    }
    weights = {
        n: torch.randn(p.shape, generator=generator, dtype=torch.float64) for n, p in params.items()
    }

    def objective(scale: torch.Tensor) -> torch.Tensor:
        grads = {n: base[n] + scale * direction[n] for n in params}
        ahead = optimizer_lookahead(optimizer, params, grads, grad_clip=3.0)
        return sum((weights[n] * ahead[n]).sum() for n in params)

    scale = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    (analytic,) = torch.autograd.grad(objective(scale), scale)
    eps = 1e-6
    numeric = (objective(scale.detach() + eps) - objective(scale.detach() - eps)) / (2 * eps)
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_an_unused_parameter_gets_a_finite_derivative() -> None:
    parameter = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    optimizer = torch.optim.Adam([parameter], lr=0.1)
    gradient = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64, requires_grad=True)
    ahead = optimizer_lookahead(optimizer, {"w": parameter}, {"w": gradient * 1.0})
    (derivative,) = torch.autograd.grad(ahead["w"].sum(), gradient)
    assert torch.isfinite(derivative).all()


def test_unknown_optimizer_and_foreign_parameters_are_refused() -> None:
    model = _model()
    params = dict(model.named_parameters())
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    with pytest.raises(TypeError, match=r"Adagrad.*supported: SGD, Adam, AdamW, RMSprop"):
        optimizer_lookahead(torch.optim.Adagrad(model.parameters()), params, grads)
    other = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="not optimised"):
        optimizer_lookahead(other, params, grads)
