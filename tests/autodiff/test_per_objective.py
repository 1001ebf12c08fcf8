"""per_objective_grads against brute force (one autograd.grad call per objective) and finite
differences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from twcore.autodiff import flatten_tensors, per_objective_grads

STRATEGIES = ["batched", "loop", "split", "auto"]
NUM_OBJECTIVES = 3


def brute_force_jacobian(losses: Tensor, inputs: Sequence[Tensor]) -> Tensor:
    """K separate autograd.grad calls, None replaced by zeros; [K, P]."""
    rows = []
    for k in range(losses.shape[0]):
        grads = torch.autograd.grad(losses[k], inputs, retain_graph=True, allow_unused=True)
        filled = [
            torch.zeros_like(t) if g is None else g for g, t in zip(grads, inputs, strict=True)
        ]
        rows.append(flatten_tensors(filled))
    return torch.stack(rows)


class ThreeObjectiveMLP(nn.Module):
    """A shared trunk and a 3-output layer; objective k is the squared error of output k."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh())
        self.out = nn.Linear(6, NUM_OBJECTIVES)

    def losses(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """([K] losses, [B, 6] trunk features)."""
        features = self.trunk(x)
        predictions = self.out(features)
        return ((predictions - y) ** 2).mean(dim=0), features


def setup_mlp() -> tuple[ThreeObjectiveMLP, Tensor, Tensor]:
    torch.manual_seed(0)
    model = ThreeObjectiveMLP().double()
    x = torch.randn(5, 4, dtype=torch.float64)
    y = torch.randn(5, NUM_OBJECTIVES, dtype=torch.float64)
    return model, x, y


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_matches_separate_autograd_calls_over_shared_parameters(strategy: str) -> None:
    model, x, y = setup_mlp()
    losses, _ = model.losses(x, y)
    params = list(model.parameters())
    expected = brute_force_jacobian(losses, params)
    jacobian = per_objective_grads(losses, params, strategy=strategy)
    assert jacobian.shape == (NUM_OBJECTIVES, sum(p.numel() for p in params))
    torch.testing.assert_close(jacobian, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_matches_separate_autograd_calls_over_shared_representation(strategy: str) -> None:
    model, x, y = setup_mlp()
    losses, features = model.losses(x, y)
    expected = brute_force_jacobian(losses, [features])
    jacobian = per_objective_grads(losses, [features], strategy=strategy)
    assert jacobian.shape == (NUM_OBJECTIVES, features.numel())
    torch.testing.assert_close(jacobian, expected, rtol=1e-12, atol=1e-12)


def test_strategies_agree_in_float32() -> None:
    model, x, y = setup_mlp()
    model = model.float()
    losses, _ = model.losses(x.float(), y.float())
    params = list(model.parameters())
    results = [per_objective_grads(losses, params, strategy=s) for s in STRATEGIES]
    for result in results[1:]:
        torch.testing.assert_close(result, results[0])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_objective_not_touching_a_parameter_gives_zero_columns(strategy: str) -> None:
    torch.manual_seed(1)
    trunk = nn.Linear(3, 4)
    heads = nn.ModuleList(nn.Linear(4, 1) for _ in range(NUM_OBJECTIVES))
    unused = nn.Parameter(torch.randn(2, 2))
    features = torch.tanh(trunk(torch.randn(6, 3)))
    losses = torch.stack([head(features).pow(2).mean() for head in heads])
    head_params = [list(head.parameters()) for head in heads]
    inputs = [*trunk.parameters(), *[p for ps in head_params for p in ps], unused]
    jacobian = per_objective_grads(losses, inputs, strategy=strategy)

    trunk_size = sum(p.numel() for p in trunk.parameters())
    head_size = sum(p.numel() for p in head_params[0])
    for k in range(NUM_OBJECTIVES):
        for j in range(NUM_OBJECTIVES):
            block = jacobian[k, trunk_size + j * head_size : trunk_size + (j + 1) * head_size]
            if j == k:
                assert block.abs().sum() > 0
            else:
                assert torch.equal(block, torch.zeros_like(block))
    assert torch.equal(jacobian[:, -unused.numel() :], torch.zeros(NUM_OBJECTIVES, 4))
    assert jacobian[:, :trunk_size].abs().sum(dim=1).min() > 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_row_matches_central_finite_differences(strategy: str) -> None:
    weight = torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64)
    scale = torch.tensor(0.9, dtype=torch.float64)

    def objectives(w: Tensor, s: Tensor) -> Tensor:
        return torch.stack([(torch.sin(w) * s).sum(), (w**2).sum() * torch.exp(s), w.prod() * s])

    w = weight.clone().requires_grad_()
    s = scale.clone().requires_grad_()
    jacobian = per_objective_grads(objectives(w, s), [w, s], strategy=strategy)

    step = 1e-6
    point = torch.cat([weight, scale.reshape(1)])
    for k in range(3):
        fd = torch.empty(4, dtype=torch.float64)
        for i in range(4):
            shift = torch.zeros(4, dtype=torch.float64)
            shift[i] = step
            up, down = point + shift, point - shift
            fd[i] = (objectives(up[:3], up[3])[k] - objectives(down[:3], down[3])[k]) / (2 * step)
        torch.testing.assert_close(jacobian[k], fd, rtol=1e-7, atol=1e-8)


class ItemInBackward(torch.autograd.Function):
    """Doubling whose backward reads a Python number: vmap cannot batch it."""

    @staticmethod
    def forward(ctx: object, x: Tensor) -> Tensor:
        return 2 * x

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> Tensor:
        factor = 2.0 if float(grad.abs().sum()) >= 0 else 0.0
        return factor * grad


def test_auto_falls_back_to_loop_when_batching_raises_and_keeps_graph_usable() -> None:
    model, x, y = setup_mlp()
    features = ItemInBackward.apply(model.trunk(x))
    losses = ((model.out(features) - y) ** 2).mean(dim=0)
    params = list(model.parameters())
    expected = brute_force_jacobian(losses, params)
    with pytest.raises(RuntimeError):
        per_objective_grads(losses, params, strategy="batched")
    # retain_graph=False: the failed batched attempt must not have freed what the loop needs.
    jacobian = per_objective_grads(losses, params, strategy="auto", retain_graph=False)
    torch.testing.assert_close(jacobian, expected, rtol=1e-12, atol=1e-12)


class CountedIdentity(torch.autograd.Function):
    """The identity, counting its backward calls per tag. Its backward reads a Python number,
    so a vectorised pass through it raises (a pass that did not raise ran it unbatched)."""

    calls: dict[int, int] = {}

    @staticmethod
    def forward(ctx: Any, x: Tensor, tag: int) -> Tensor:
        ctx.tag = tag
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        CountedIdentity.calls[ctx.tag] = CountedIdentity.calls.get(ctx.tag, 0) + 1
        return grad * (1.0 if float(grad.abs().sum()) >= 0 else 0.0), None


def counted_heads_losses(heads: nn.ModuleList, features: Tensor) -> Tensor:
    """[K] losses stacked from K scalars, loss k through head k only (which counts)."""
    return torch.stack(
        [head(CountedIdentity.apply(features, k)).pow(2).mean() for k, head in enumerate(heads)]
    )


@pytest.mark.parametrize("strategy", ["split", "auto"])
def test_split_runs_each_head_once_for_its_own_loss(strategy: str) -> None:
    torch.manual_seed(2)
    trunk = nn.Linear(3, 4).double()
    heads = nn.ModuleList(nn.Linear(4, 2) for _ in range(NUM_OBJECTIVES)).double()
    features = torch.tanh(trunk(torch.randn(6, 3, dtype=torch.float64)))
    losses = counted_heads_losses(heads, features)
    own = list(heads.parameters())
    # A representation (a non-leaf tensor): auto splits. With the heads' own parameters
    # beside it, only "split" does.
    inputs = [features] if strategy == "auto" else [features, *own]
    expected = brute_force_jacobian(losses, inputs)
    CountedIdentity.calls = {}
    jacobian = per_objective_grads(losses, inputs, strategy=strategy)
    assert CountedIdentity.calls == {k: 1 for k in range(NUM_OBJECTIVES)}
    torch.testing.assert_close(jacobian, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("retain_graph", [True, False])
def test_split_matches_brute_force_on_stacked_losses(retain_graph: bool) -> None:
    """Losses stacked from K scalars, on parameters and on the representation together, with
    and without keeping the graph."""
    torch.manual_seed(3)
    trunk = nn.Linear(3, 4).double()
    heads = nn.ModuleList(nn.Linear(4, 2) for _ in range(NUM_OBJECTIVES)).double()
    features = torch.tanh(trunk(torch.randn(6, 3, dtype=torch.float64)))
    losses = torch.stack([head(features).sin().mean() for head in heads])
    inputs = [features, *trunk.parameters(), *heads.parameters()]
    expected = brute_force_jacobian(losses, inputs)
    jacobian = per_objective_grads(losses, inputs, strategy="split", retain_graph=retain_graph)
    torch.testing.assert_close(jacobian, expected, rtol=1e-12, atol=1e-12)


def test_split_falls_back_where_a_pass_cannot_start_from_a_graph_edge(monkeypatch) -> None:
    """A torch without passes from graph edges (TypeError there): the vectorised pass."""
    from twcore.autodiff import per_objective

    def unsupported(*args: object, **kwargs: object) -> None:
        raise TypeError("no GradientEdge support")

    monkeypatch.setattr(per_objective, "each_scalar_grads", unsupported)
    torch.manual_seed(4)
    heads = nn.ModuleList(nn.Linear(4, 2) for _ in range(NUM_OBJECTIVES)).double()
    features = torch.randn(5, 4, dtype=torch.float64, requires_grad=True) * 2
    losses = torch.stack([head(features).pow(2).mean() for head in heads])
    expected = brute_force_jacobian(losses, [features])
    for strategy in ("split", "auto"):
        jacobian = per_objective_grads(losses, [features], strategy=strategy)
        torch.testing.assert_close(jacobian, expected, rtol=1e-12, atol=1e-12)


def test_auto_runs_every_head_for_every_loss_on_parameters() -> None:
    """On leaves (the trunk's parameters) auto keeps one pass per row through everything
    (here the loop: the counting head cannot be batched), never the split."""
    torch.manual_seed(2)
    trunk = nn.Linear(3, 4).double()
    heads = nn.ModuleList(nn.Linear(4, 2) for _ in range(NUM_OBJECTIVES)).double()
    losses = counted_heads_losses(heads, torch.tanh(trunk(torch.randn(6, 3).double())))
    expected = brute_force_jacobian(losses, list(trunk.parameters()))
    CountedIdentity.calls = {}
    jacobian = per_objective_grads(losses, list(trunk.parameters()))
    # (the batched attempt may run a head before it raises)
    assert all(CountedIdentity.calls[k] >= NUM_OBJECTIVES for k in range(NUM_OBJECTIVES))
    torch.testing.assert_close(jacobian, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_create_graph_gives_differentiable_rows(strategy: str) -> None:
    w = torch.tensor([0.5, -1.5], dtype=torch.float64, requires_grad=True)
    losses = torch.stack([(w**3).sum(), w[0] * w[1] ** 2])
    jacobian = per_objective_grads(losses, [w], create_graph=True, strategy=strategy)
    # d/dw of sum(J) where J = [[3w0², 3w1²], [w1², 2 w0 w1]].
    (second,) = torch.autograd.grad(jacobian.sum(), w)
    w0, w1 = w.detach()
    expected = torch.stack([6 * w0 + 2 * w1, 6 * w1 + 2 * w1 + 2 * w0])
    torch.testing.assert_close(second, expected)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_retain_graph_keeps_the_graph_for_a_later_backward(strategy: str) -> None:
    model, x, y = setup_mlp()
    losses, _ = model.losses(x, y)
    per_objective_grads(losses, list(model.parameters()), strategy=strategy)
    losses.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_constant_losses_give_zeros() -> None:
    w = torch.randn(3, requires_grad=True)
    jacobian = per_objective_grads(torch.tensor([1.0, 2.0]), [w])
    assert torch.equal(jacobian, torch.zeros(2, 3))


@pytest.mark.parametrize(
    ("losses", "message"),
    [
        (torch.ones(2, 2, requires_grad=True), "1-D"),
        (torch.ones((), requires_grad=True), "1-D"),
        (torch.ones(0, requires_grad=True), "empty"),
    ],
)
def test_rejects_losses_that_are_not_a_non_empty_vector(losses: Tensor, message: str) -> None:
    w = torch.randn(3, requires_grad=True)
    with pytest.raises(ValueError, match=message):
        per_objective_grads(losses * w.sum(), [w])


def test_rejects_unknown_strategy_and_empty_inputs() -> None:
    w = torch.randn(3, requires_grad=True)
    losses = torch.stack([w.sum(), w.prod()])
    with pytest.raises(ValueError, match="valid strategies"):
        per_objective_grads(losses, [w], strategy="vmap")
    with pytest.raises(ValueError, match="inputs"):
        per_objective_grads(losses, [])
