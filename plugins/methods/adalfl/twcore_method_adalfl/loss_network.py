"""The learned loss: a small network ℓφ applied to (prediction, target) pairs.

Paper, §3: ℓφ is a feed-forward network 2 → 50 → 50 → 1 without biases, with smooth leaky ReLU
activations φ(x) = 0.25·x + 0.75·softplus(x; β = 2). For classification it is applied to every
class's pair (softmax probability p_c, one-hot target y_c) and summed over classes; for regression
to every output's pair (prediction, target) and averaged over outputs (as the squared error is).
All pairs go through the network as one [B, C, 2] tensor: no loop over classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from twcore.losses import align_regression_target
from twcore.spec import ObjectiveKind


class SmoothLeakyReLU(nn.Module):
    """0.25·x + 0.75·softplus(x) with β = 2: smooth everywhere, slope 0.25 → 1 (paper, Eq. 9)."""

    def forward(self, x: Tensor) -> Tensor:
        return 0.25 * x + 0.75 * F.softplus(x, beta=2.0)

    @staticmethod
    def derivative(x: Tensor) -> Tensor:
        """The slope 0.25 + 0.75·σ(2x)."""
        return torch.sigmoid(2.0 * x).mul(0.75).add(0.25)


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
        return self.output(self.body(pairs)).squeeze(-1)

    def value_and_slope(self, pairs: Tensor) -> tuple[Tensor, Tensor]:
        """(ℓφ(pairs) [...], ∂ℓφ/∂a [...] for pairs (a, b) [..., 2]).

        The chain rule written out, layer by layer: as a function of φ this is a first-order
        graph, so differentiating it in φ costs one ordinary backward pass (autograd's
        ``create_graph`` on the forward pass would build, and then differentiate, a graph of
        its backward pass: about three times the ops on these small tensors).
        """
        hidden = pairs
        weights: list[Tensor] = []  # the linear layers' weights, input side first
        slopes: list[Tensor] = []  # each activation's derivative at its input
        for layer in self.body:
            if isinstance(layer, nn.Linear):
                weights.append(layer.weight)
                hidden = hidden @ layer.weight.T
            else:
                slopes.append(layer.derivative(hidden))
                hidden = layer(hidden)
        value = (hidden @ self.output.weight.T).squeeze(-1)
        slope = self.output.weight.squeeze(0)  # ∂ℓ/∂(last hidden layer)
        for weight, derivative in zip(reversed(weights), reversed(slopes), strict=True):
            slope = (slope * derivative) @ weight
        return value, slope[..., 0]


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
        values = self.network(pairs)  # [B, C]
        return values.sum(dim=1) if reduce == "sum" else values.mean(dim=1)

    def value_and_gradient(self, predictions: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """(the per-example loss [B], its derivative in `predictions`, same shape as them).

        Both are graphs in φ of first order only (:meth:`LossNetwork.value_and_slope`);
        `predictions` themselves are treated as constants.
        """
        pairs, reduce = PAIRS[self.kind](predictions.detach(), targets)
        values, slopes = self.network.value_and_slope(pairs)  # [B, C] each
        gradient = PREDICTION_GRADIENTS[self.kind](pairs[..., 0], slopes)
        summed = values.sum(dim=1) if reduce == "sum" else values.mean(dim=1)
        return summed, gradient.reshape(predictions.shape)


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
