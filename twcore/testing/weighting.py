"""Properties every per-step weighting must have, as a suite an author runs on their own rule.

Subclass it in a pytest module and say how to build the rule::

    from twcore.testing import WeightingProperties

    class TestMyWeighting(WeightingProperties):
        simplex = True            # the weights are a probability vector

        def make(self, num_objectives, main):
            return MyWeighting(num_objectives)

Each test builds a small model in float64 — a shared trunk and one head per objective — and
checks the rule through its public :meth:`~twcore.contract.weighting.Weighting.backward`:
weights that permute with the objectives, plain training for one objective, the simplex when
promised, identical weights for identical objectives (both in distribution for a rule that
draws random numbers, :attr:`WeightingProperties.randomized`), a zero-gradient objective handled, a
non-finite loss refused with a clear error, gradients that accumulate as ``backward`` does, and
a state that survives a ``weights_only`` checkpoint: a restored rule steps exactly as the
original.
"""

from __future__ import annotations

import io
from typing import ClassVar

import pytest
import torch
from torch import Tensor, nn

from twcore.contract.weighting import WeightedStep, Weighting

FEATURES, WIDTH, BATCH = 5, 6, 16


class _Model(nn.Module):
    """A trunk shared by `heads` linear heads, in float64."""

    def __init__(self, heads: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.trunk = nn.Linear(FEATURES, WIDTH).double()
        self.heads = nn.ModuleList(nn.Linear(WIDTH, 1).double() for _ in range(heads))
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(
                    torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
                )
        self.inputs = torch.randn(BATCH, FEATURES, generator=generator, dtype=torch.float64)
        self.targets = torch.randn(heads, BATCH, generator=generator, dtype=torch.float64)

    def losses(self, order: list[int] | None = None) -> Tensor:
        """[K] squared-error losses, one per head, in `order` (default: as built)."""
        features = torch.tanh(self.trunk(self.inputs))
        losses = [
            (head(features).squeeze(1) - target).square().mean()
            for head, target in zip(self.heads, self.targets, strict=True)
        ]
        return torch.stack([losses[i] for i in (order or range(len(losses)))])

    def gradients(self) -> dict[str, Tensor]:
        return {n: p.grad.clone() for n, p in self.named_parameters() if p.grad is not None}


class WeightingProperties:
    """The property suite (see the module docstring). Set :attr:`simplex` if the weights are
    promised to be a probability vector, and implement :meth:`make`."""

    simplex: ClassVar[bool] = False
    """Whether the rule's weights are non-negative and sum to one."""
    num_objectives: ClassVar[int] = 3
    weight_tolerance: ClassVar[float | None] = None
    """Absolute tolerance of weight comparisons, for rules that solve for their weights
    numerically (default: torch's float comparison)."""
    randomized: ClassVar[bool] = False
    """Whether the rule draws random numbers every step (random loss weighting, PCGrad's
    projection order): then the weights permute with the objectives, and identical objectives
    get identical weights, in distribution — checked on the mean weights over :attr:`draws`
    steps of one rule, to within :attr:`mean_tolerance`."""
    draws: ClassVar[int] = 400
    mean_tolerance: ClassVar[float] = 0.08

    def make(self, num_objectives: int, main: int) -> Weighting:
        """A fresh rule for `num_objectives` losses whose main one (if the rule has one) is
        at index `main`."""
        raise NotImplementedError

    def _step(self, model: _Model, rule: Weighting, order: list[int] | None = None) -> WeightedStep:
        model.zero_grad(set_to_none=True)
        return rule.backward(model.losses(order), list(model.trunk.parameters()))

    def _assert_weights_close(self, actual: Tensor, expected: Tensor) -> None:
        tolerance = self.weight_tolerance
        if tolerance is None:
            torch.testing.assert_close(actual, expected)
        else:
            torch.testing.assert_close(actual, expected, atol=tolerance, rtol=0)

    def _mean_weights(
        self, model: _Model, rule: Weighting, order: list[int] | None = None
    ) -> Tensor:
        """The mean weights of `draws` steps on the same losses (the model does not move)."""
        total = sum(self._step(model, rule, order).weights for _ in range(self.draws))
        return torch.as_tensor(total) / self.draws

    def test_weights_permute_with_the_objectives(self) -> None:
        k = self.num_objectives
        order = [k - 1 - i for i in range(k)]  # reversed: the main one moves to the end
        model = _Model(k)
        if self.randomized:
            plain_mean = self._mean_weights(model, self.make(k, main=0))
            permuted_mean = self._mean_weights(model, self.make(k, main=order.index(0)), order)
            torch.testing.assert_close(
                permuted_mean, plain_mean[order], atol=self.mean_tolerance, rtol=0
            )
            return
        plain = self._step(model, self.make(k, main=0))
        gradients = model.gradients()
        permuted = self._step(model, self.make(k, main=order.index(0)), order)
        self._assert_weights_close(permuted.weights, plain.weights[order])
        for name, gradient in model.gradients().items():
            torch.testing.assert_close(gradient, gradients[name])

    def test_one_objective_is_plain_training(self) -> None:
        model = _Model(1)
        step = self._step(model, self.make(1, main=0))
        torch.testing.assert_close(step.weights, torch.ones(1, dtype=step.weights.dtype))
        expected = torch.autograd.grad(model.losses()[0], list(model.parameters()))
        for (_, parameter), gradient in zip(model.named_parameters(), expected, strict=True):
            torch.testing.assert_close(parameter.grad, gradient)

    def test_weights_are_finite_and_on_the_simplex_if_promised(self) -> None:
        model = _Model(self.num_objectives)
        rule = self.make(self.num_objectives, main=0)
        for _ in range(3):
            weights = self._step(model, rule).weights
            assert weights.shape == (self.num_objectives,)
            assert bool(torch.isfinite(weights).all()), weights
            if self.simplex:
                assert bool((weights >= 0).all()), weights
                torch.testing.assert_close(weights.sum(), torch.ones((), dtype=weights.dtype))

    def test_identical_objectives_get_identical_weights(self) -> None:
        model = _Model(2)
        with torch.no_grad():  # head 1 becomes a copy of head 0, with the same targets
            model.heads[1].load_state_dict(model.heads[0].state_dict())
            model.targets[1] = model.targets[0]
        if self.randomized:
            mean = self._mean_weights(model, self.make(2, main=0))
            torch.testing.assert_close(mean[0], mean[1], atol=self.mean_tolerance, rtol=0)
            return
        weights = self._step(model, self.make(2, main=0)).weights
        self._assert_weights_close(weights[0], weights[1])

    def test_an_objective_without_gradient_is_handled(self) -> None:
        model = _Model(self.num_objectives)
        rule = self.make(self.num_objectives, main=0)
        model.zero_grad(set_to_none=True)
        losses = model.losses()
        constant = losses[-1].detach() + 0.0 * sum(p.sum() for p in model.parameters())
        step = rule.backward(
            torch.cat([losses[:-1], constant.unsqueeze(0)]), list(model.trunk.parameters())
        )
        assert bool(torch.isfinite(step.weights).all()), step.weights
        for name, gradient in model.gradients().items():
            assert bool(torch.isfinite(gradient).all()), name

    def test_a_non_finite_loss_is_a_clear_error(self) -> None:
        model = _Model(self.num_objectives)
        rule = self.make(self.num_objectives, main=0)
        losses = model.losses()
        broken = torch.cat([losses[:-1], (losses[-1] * float("nan")).unsqueeze(0)])
        with pytest.raises(ValueError, match="non-finite"):
            rule.backward(broken, list(model.trunk.parameters()))

    def test_gradients_accumulate_like_backward(self) -> None:
        k = self.num_objectives
        model = _Model(k)
        self._step(model, self.make(k, main=0))
        once = model.gradients()
        model.zero_grad(set_to_none=True)
        for _ in range(2):  # two fresh rules, no zeroing in between
            self.make(k, main=0).backward(model.losses(), list(model.trunk.parameters()))
        for name, gradient in model.gradients().items():
            torch.testing.assert_close(gradient, 2 * once[name])

    def test_the_state_survives_a_weights_only_checkpoint(self) -> None:
        k = self.num_objectives
        model, rule = _Model(k), self.make(k, main=0)
        for _ in range(2):
            self._step(model, rule)
            with torch.no_grad():  # move the model, so the next step's losses differ
                for parameter in model.parameters():
                    assert parameter.grad is not None, "the rule left a parameter without .grad"
                    parameter.sub_(0.05 * parameter.grad)
        buffer = io.BytesIO()
        torch.save(rule.state_dict(), buffer)
        buffer.seek(0)
        restored = self.make(k, main=0)
        restored.load_state_dict(torch.load(buffer, weights_only=True))
        expected = self._step(model, rule)
        gradients = model.gradients()
        actual = self._step(model, restored)
        torch.testing.assert_close(actual.weights, expected.weights, rtol=0, atol=0)
        for name, gradient in model.gradients().items():
            torch.testing.assert_close(gradient, gradients[name], rtol=0, atol=0)
