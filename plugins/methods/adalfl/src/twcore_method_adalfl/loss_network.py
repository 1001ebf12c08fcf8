"""The learned loss: a small network ℓφ applied to (prediction, target) pairs.

Paper, §3: ℓφ is a feed-forward network 2 → 50 → 50 → 1 without biases, with smooth leaky ReLU
activations φ(x) = 0.25·x + 0.75·softplus(x; β = 2). For classification it is applied to every
class's pair (softmax probability p_c, one-hot target y_c) and summed over classes; for regression
to every output's pair (prediction, target) and averaged over outputs (as the squared error is).
All pairs go through the network as one [B, C, 2] tensor: no loop over classes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from twcore.contract.losses import align_regression_target
from twcore.contract.spec import ObjectiveKind


class SmoothLeakyReLU(nn.Module):
    """0.25·x + 0.75·softplus(x) with β = 2: smooth everywhere, slope 0.25 → 1 (paper, Eq. 9)."""

    def forward(self, x: Tensor) -> Tensor:
        return self.at(x, 2.0 * x)

    @staticmethod
    def at(x: Tensor, doubled: Tensor) -> Tensor:
        """φ(x) from x and 2x, as x − 0.375·log σ(2x): the same function (softplus(x; β = 2) =
        x − ½·log σ(2x)), and on CPU torch's log-sigmoid runs on every thread where its
        softplus runs on one."""
        return torch.add(x, F.logsigmoid(doubled), alpha=-0.375)


@dataclass
class SlopePass:
    """ℓφ on a set of pairs, its slope in the pairs' first element, and the intermediates from
    which :meth:`phi_gradients` differentiates the slope in φ (all detached; N pairs, layer l
    of width H_l, weights W_l of shape [H_l, H_l-1], output weights w [H_L]).

    Attributes:
        value: ℓφ(pairs) [...].
        slope: ∂ℓφ/∂a [...] for pairs (a, b).
        weights: W_1 … W_L, the hidden layers' weights as they were.
        inputs: z_0 … z_L-1, each hidden layer's input [N, H_l-1] (z_0 = the pairs).
        sigmoids: σ(2h_l) [N, H_l] at each hidden layer's pre-activation h_l.
        slopes: d_l = φ'(h_l) = 0.25 + 0.75·σ(2h_l) [N, H_l].
        upstream: q_l = ∂ℓ/∂z_l [N, H_l] (q_L = w itself, [H_L]).
        backprop: r_l = d_l ⊙ q_l = ∂ℓ/∂h_l [N, H_l].
    """

    value: Tensor
    slope: Tensor
    weights: list[Tensor]
    inputs: list[Tensor]
    sigmoids: list[Tensor]
    slopes: list[Tensor]
    upstream: list[Tensor]
    backprop: list[Tensor]

    def phi_gradients(self, adjoint: Tensor) -> list[Tensor]:
        """∂/∂φ Σ adjoint ⊙ slope (`adjoint` shaped like :attr:`slope`), in the order of
        ``LossNetwork.parameters()``: the reverse pass of the slope's computation, then of the
        forward pass it read, written out (no autograd graph; the tests check it against
        autograd's second-order derivative)."""
        v = adjoint.reshape(-1)
        weights, depth = self.weights, len(self.weights)
        gradients: list[Tensor | None] = [None] * depth
        # slope = r_1 · W_1[:, 0]
        first_column = self.backprop[0].T @ v
        adjoint_r = torch.outer(v, weights[0][:, 0])
        adjoint_pre = []
        output_gradient = None
        for layer in range(depth):
            # r_l = d_l ⊙ q_l: into d_l (then h_l, through φ'' = 1.5·σ(2h)(1 − σ(2h))) and q_l.
            adjoint_d = adjoint_r * self.upstream[layer]
            adjoint_q = adjoint_r * self.slopes[layer]
            adjoint_pre.append(
                torch.ops.aten.sigmoid_backward(adjoint_d, self.sigmoids[layer]).mul_(1.5)
            )
            if layer + 1 < depth:  # q_l = r_l+1 W_l+1
                gradients[layer + 1] = self.backprop[layer + 1].T @ adjoint_q
                adjoint_r = adjoint_q @ weights[layer + 1].T
            else:  # q_L = w
                output_gradient = adjoint_q.sum(dim=0, keepdim=True)
        # The forward pass h_l = z_l-1 W_lᵀ, z_l = φ(h_l), last layer first (the value, z_L's
        # only reader, is not differentiated).
        adjoint_z = None
        for layer in reversed(range(depth)):
            adjoint_h = adjoint_pre[layer]
            if adjoint_z is not None:
                adjoint_h = adjoint_h.addcmul_(adjoint_z, self.slopes[layer])
            forward_part = adjoint_h.T @ self.inputs[layer]
            previous = gradients[layer]
            gradients[layer] = forward_part if previous is None else previous.add_(forward_part)
            if layer:
                adjoint_z = adjoint_h @ weights[layer]
        gradients[0][:, 0] += first_column  # type: ignore[index]
        return [*gradients, output_gradient]  # type: ignore[list-item]


class LossNetwork(nn.Module):
    """ℓφ(a, b): pairs [..., 2] -> values [...]; bias-free linear layers, smooth leaky ReLU.

    Args:
        hidden: widths of the hidden layers (the paper's [50, 50]).
        zero_output: start with an output layer of zeros, so that ℓφ ≡ 0 (the start at the base
            loss); otherwise PyTorch's default (Kaiming-uniform) initialisation throughout.
    """

    def __init__(self, hidden: Sequence[int] = (50, 50), *, zero_output: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 2
        for size in hidden:
            layers += [nn.Linear(width, size, bias=False), SmoothLeakyReLU()]
            width = size
        self.body = nn.Sequential(*layers)
        self.output = nn.Linear(width, 1, bias=False)
        if zero_output:
            nn.init.zeros_(self.output.weight)

    def forward(self, pairs: Tensor) -> Tensor:
        values: Tensor = self.output(self.body(pairs))
        return values.squeeze(-1)

    def slope_pass(self, pairs: Tensor) -> SlopePass:
        """ℓφ(pairs) and its slope ∂ℓφ/∂a for pairs (a, b) [..., 2], with what the slope's
        derivative in φ needs (:meth:`SlopePass.phi_gradients`). Computed without autograd:
        both passes are written out layer by layer."""
        weights = [layer.weight.detach() for layer in self.body if isinstance(layer, nn.Linear)]
        output = self.output.weight.detach()[0]
        with torch.no_grad():
            hidden = pairs.reshape(-1, 2)
            inputs, sigmoids, slopes = [], [], []
            for weight in weights:
                inputs.append(hidden)
                pre = hidden @ weight.T
                doubled = 2.0 * pre
                sigmoid = torch.sigmoid(doubled)
                sigmoids.append(sigmoid)
                slopes.append(sigmoid * 0.75 + 0.25)  # φ'(h) = 0.25 + 0.75·σ(2h)
                hidden = SmoothLeakyReLU.at(pre, doubled)
            value = hidden @ output
            # ∂ℓ/∂(each layer's output), last layer first: r_l = d_l ⊙ q_l, q_l = r_l+1 W_l+1.
            upstream: list[Tensor] = [output]
            backprop = [slopes[-1] * output]
            for weight, derivative in zip(weights[:0:-1], slopes[-2::-1], strict=True):
                upstream.insert(0, backprop[0] @ weight)
                backprop.insert(0, derivative * upstream[0])
            slope = backprop[0] @ weights[0][:, 0]
        return SlopePass(
            value=value.reshape(pairs.shape[:-1]),
            slope=slope.reshape(pairs.shape[:-1]),
            weights=weights,
            inputs=inputs,
            sigmoids=sigmoids,
            slopes=slopes,
            upstream=upstream,
            backprop=backprop,
        )


class LearnedLoss(nn.Module):
    """The per-example learned loss of one objective: [B] from a head's output and targets.

    Args:
        kind: the objective's kind (classification or regression).
        network: ℓφ.
    """

    def __init__(self, kind: ObjectiveKind, network: LossNetwork) -> None:
        super().__init__()
        if kind not in PAIRS:
            raise ValueError(
                f"a learned loss needs a classification or regression objective, not {kind}"
            )
        self.kind = ObjectiveKind(kind)
        self.network = network

    def forward(self, predictions: Tensor, targets: Tensor) -> Tensor:
        pairs, reduce = PAIRS[self.kind](predictions, targets)
        values: Tensor = self.network(pairs)  # [B, C]
        return values.sum(dim=1) if reduce == "sum" else values.mean(dim=1)

    def gradient_pass(self, predictions: Tensor, targets: Tensor) -> LearnedGradientPass:
        """The per-example loss, its derivative in `predictions` (which are treated as
        constants), and the derivative of that in φ (:class:`LearnedGradientPass`)."""
        pairs, reduce = PAIRS[self.kind](predictions.detach(), targets)
        slopes = self.network.slope_pass(pairs)  # [B, C] each
        to_predictions = functools.partial(PREDICTION_GRADIENTS[self.kind], pairs[..., 0])
        values = slopes.value.sum(dim=1) if reduce == "sum" else slopes.value.mean(dim=1)
        gradient = to_predictions(slopes.slope).reshape(predictions.shape)
        return LearnedGradientPass(values, gradient, slopes, to_predictions)


@dataclass
class LearnedGradientPass:
    """A learned loss's value and derivative in the predictions, kept for its φ-derivative.

    Attributes:
        value: the per-example loss [B].
        gradient: its derivative in the predictions, shaped like them.
        slopes: the loss network's pass over the pairs.
        to_predictions: the linear map from the pairs' slopes to `gradient` (through the
            softmax, or the mean over outputs). Both maps are symmetric, so it is its own
            adjoint.
    """

    value: Tensor
    gradient: Tensor
    slopes: SlopePass
    to_predictions: Callable[[Tensor], Tensor]

    def phi_gradients(self, tangent: Tensor) -> list[Tensor]:
        """∂/∂φ ⟨tangent, gradient⟩ (`tangent` shaped like :attr:`gradient`), in the order of
        the loss's parameters."""
        adjoint = self.to_predictions(tangent.reshape(self.slopes.slope.shape))
        return self.slopes.phi_gradients(adjoint)


def classification_pairs(logits: Tensor, labels: Tensor) -> tuple[Tensor, str]:
    """(p_c, y_c) for every class: logits [B, C], labels [B] -> [B, C, 2], summed over c."""
    probabilities = torch.softmax(logits, dim=1)
    one_hot = F.one_hot(labels.long(), logits.shape[1]).to(probabilities.dtype)
    return torch.stack([probabilities, one_hot], dim=-1), "sum"


def regression_pairs(predictions: Tensor, targets: Tensor) -> tuple[Tensor, str]:
    """(ŷ_d, y_d) for every output: predictions [B, D] or [B] -> [B, D, 2], averaged over d."""
    targets = align_regression_target(predictions, targets)
    flat_predictions = predictions.reshape(predictions.shape[0], -1)
    flat_targets = targets.reshape(targets.shape[0], -1)
    return torch.stack([flat_predictions, flat_targets], dim=-1), "mean"


def through_softmax(probabilities: Tensor, slopes: Tensor) -> Tensor:
    """∂/∂logits of Σ_c ℓ(p_c, y_c) from the slopes ∂ℓ/∂p_c: p ⊙ (s − ⟨p, s⟩)."""
    return probabilities * (slopes - (probabilities * slopes).sum(dim=1, keepdim=True))


def through_mean(predictions: Tensor, slopes: Tensor) -> Tensor:
    """∂/∂ŷ of mean_d ℓ(ŷ_d, y_d) from the slopes ∂ℓ/∂ŷ_d."""
    return slopes / slopes.shape[1]


PAIRS = {
    ObjectiveKind.CLASSIFICATION: classification_pairs,
    ObjectiveKind.REGRESSION: regression_pairs,
}
PREDICTION_GRADIENTS = {
    ObjectiveKind.CLASSIFICATION: through_softmax,
    ObjectiveKind.REGRESSION: through_mean,
}
