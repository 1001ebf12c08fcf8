"""The differentiable lookahead equals the step the optimiser then takes, for every optimiser
the core offers, and its derivative matches finite differences. `step_with_vjp` takes plain
training's step, bit for bit, and its closed-form VJP equals autograd through the lookahead."""

from __future__ import annotations

import copy

import pytest
import torch
from twcore_method_adalfl.optimizer_lookahead import optimizer_lookahead
from twcore_method_adalfl.optimizer_step_vjp import OptimizerStepVJP, step_with_vjp

SETTINGS = [
    (torch.optim.SGD, {"lr": 0.1}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.5, "dampening": 0.3}),
    (torch.optim.Adam, {"lr": 0.01}),
    (torch.optim.Adam, {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    (torch.optim.Adam, {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    (torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
    (torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
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
    with pytest.raises(TypeError, match=r"Adagrad.*supported: AdamW, Adam, SGD, RMSprop"):
        optimizer_lookahead(torch.optim.Adagrad(model.parameters()), params, grads)
    other = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="not optimised"):
        optimizer_lookahead(other, params, grads)
    with pytest.raises(TypeError, match=r"Adagrad.*supported: AdamW, Adam, SGD, RMSprop"):
        step_with_vjp(torch.optim.Adagrad(model.parameters()), params, grads)
    with pytest.raises(ValueError, match="not optimised"):
        step_with_vjp(other, params, grads)


# -- the step's closed-form VJP ---------------------------------------------------------------


@pytest.mark.parametrize(("optimizer_class", "options"), SETTINGS)
@pytest.mark.parametrize("grad_clip", [None, 100.0, 0.5])
def test_vjp_equals_autograd_through_the_lookahead(optimizer_class, options, grad_clip) -> None:
    model = _model()
    optimizer = optimizer_class(model.parameters(), **options)
    params = dict(model.named_parameters())
    generator = torch.Generator().manual_seed(4)
    for step in range(3):  # from a fresh state, then with running averages
        grads = dict(
            zip(params, torch.autograd.grad(_loss(model, step), list(params.values())), strict=True)
        )
        grads["0.bias"][1] = 0.0  # an element without gradient (√v = 0 at the first step)
        cotangents = {
            n: torch.randn(p.shape, generator=generator, dtype=torch.float64)
            for n, p in params.items()
        }
        leaves = {n: g.clone().requires_grad_() for n, g in grads.items()}
        ahead = optimizer_lookahead(optimizer, params, leaves, grad_clip=grad_clip)
        expected = torch.autograd.grad(
            sum((cotangents[n] * ahead[n]).sum() for n in params), list(leaves.values())
        )
        plain_model, plain_optimizer = copy.deepcopy((model, optimizer))
        vjp = step_with_vjp(
            optimizer, params, {n: g.clone() for n, g in grads.items()}, grad_clip=grad_clip
        )
        assert (vjp.clip_scale is not None) == (grad_clip == 0.5)
        pulled = vjp(cotangents)
        for name, value in zip(params, expected, strict=True):
            torch.testing.assert_close(pulled[name], value, rtol=1e-10, atol=1e-12)
        for parameter, grad in zip(plain_model.parameters(), grads.values(), strict=True):
            parameter.grad = grad.clone()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(plain_model.parameters(), grad_clip)
        plain_optimizer.step()
        for parameter, plain in zip(model.parameters(), plain_model.parameters(), strict=True):
            torch.testing.assert_close(parameter, plain, rtol=0, atol=0)


@pytest.mark.parametrize("grad_clip", [None, 0.1])
def test_missing_cotangents_are_zero_and_state_round_trips(grad_clip) -> None:
    """A missing (or None) cotangent counts as zero; with a clip that bites, its parameter still
    gets the rank-one term, as autograd through the lookahead says."""
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    params = dict(model.named_parameters())
    grads = {n: torch.full_like(p, 0.5) for n, p in params.items()}
    cotangents = {"0.weight": torch.ones_like(params["0.weight"]), "2.bias": None}
    leaves = {n: g.clone().requires_grad_() for n, g in grads.items()}
    ahead = optimizer_lookahead(optimizer, params, leaves, grad_clip=grad_clip)
    expected = torch.autograd.grad((ahead["0.weight"]).sum(), list(leaves.values()))
    vjp = step_with_vjp(optimizer, params, grads, grad_clip=grad_clip)
    pulled = vjp(cotangents)
    for name, value in zip(leaves, expected, strict=True):
        torch.testing.assert_close(pulled.get(name, torch.zeros_like(value)), value)
    assert (set(pulled) == {"0.weight"}) == (grad_clip is None)
    restored = OptimizerStepVJP.from_state_dict(vjp.state_dict())
    for name, value in pulled.items():
        torch.testing.assert_close(restored(cotangents)[name], value, rtol=0, atol=0)


class ScheduledAdam(torch.optim.Adam):
    """A user's subclass of a supported optimiser (same update, its own bookkeeping)."""

    def step(self, closure=None):
        self.steps_taken = getattr(self, "steps_taken", 0) + 1
        return super().step(closure)


def test_a_subclass_of_a_supported_optimizer_uses_its_parents_rule() -> None:
    model = _model()
    optimizer = ScheduledAdam(model.parameters(), lr=0.01)
    params = dict(model.named_parameters())
    grads = {n: torch.randn_like(p) for n, p in params.items()}
    ahead = optimizer_lookahead(optimizer, params, grads)
    step_with_vjp(optimizer, params, {n: g.clone() for n, g in grads.items()})
    assert optimizer.steps_taken == 1
    for name, parameter in params.items():
        torch.testing.assert_close(parameter.detach(), ahead[name].detach())
