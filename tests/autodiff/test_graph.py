"""Which parameters a loss reaches, found by walking its graph, against differentiation."""

from __future__ import annotations

import torch

from twcore.autodiff import reached_leaves, shared_leaves


def _two_heads():
    torch.manual_seed(0)
    trunk = torch.nn.Linear(3, 4)
    main, aux, unused = (torch.nn.Linear(4, 2) for _ in range(3))
    features = torch.tanh(trunk(torch.randn(5, 3)))
    losses = [main(features).square().mean(), aux(features).square().mean()]
    return trunk, main, aux, unused, losses


def _ids(tensors):
    return {id(t) for t in tensors}


def test_reached_leaves_are_the_parameters_with_a_gradient():
    trunk, main, aux, unused, (loss, _) = _two_heads()
    everything = [*trunk.parameters(), *main.parameters(), *aux.parameters(), *unused.parameters()]
    grads = torch.autograd.grad(loss, everything, allow_unused=True)
    expected = {id(p) for p, g in zip(everything, grads, strict=True) if g is not None}
    assert _ids(reached_leaves(loss)) == expected == _ids([*trunk.parameters(), *main.parameters()])
    assert reached_leaves(torch.ones(2)) == []


def test_shared_leaves_of_stacked_losses_are_the_trunk():
    trunk, *_, losses = _two_heads()
    assert _ids(shared_leaves(torch.stack(losses))) == _ids(trunk.parameters())


def test_shared_leaves_without_a_stack_are_found_by_differentiation():
    trunk, *_, losses = _two_heads()
    combined = torch.cat([losses[0].reshape(1), losses[1].reshape(1)])  # not a stack
    assert _ids(shared_leaves(combined)) == _ids(trunk.parameters())
