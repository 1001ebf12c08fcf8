"""The learned loss drawn as curves, for W&B line plots and the docs' PNGs."""

from __future__ import annotations

import torch

from twcore.contract.media import LinePlot
from twcore.contract.spec import ObjectiveKind
from twcore_method_adalfl.loss_network import LearnedLoss

POINTS = 99


@torch.no_grad()
def loss_curves(loss: LearnedLoss, *, with_base: bool, title: str = "") -> LinePlot:
    """One objective's learned loss as a function of one pair.

    Classification: the loss term of the true class against its predicted probability p
    (y = 1), with the term of any other class at the same probability (y = 0) and the
    cross-entropy −log p as extra series. Regression: the loss against the error ŷ − y at
    target 0, with target 1 and the squared error as extra series.
    """
    network = loss.network
    parameter = next(network.parameters())
    if loss.kind is ObjectiveKind.CLASSIFICATION:
        x = torch.linspace(0.01, 0.99, POINTS, dtype=parameter.dtype, device=parameter.device)
        reference = -torch.log(x)
        main = network(torch.stack([x, torch.ones_like(x)], dim=-1))
        other = network(torch.stack([x, torch.zeros_like(x)], dim=-1))
        main = main + reference if with_base else main
        return LinePlot(
            x=x.tolist(),
            y=main.tolist(),
            title=title,
            x_label="p (true class)",
            y_label="learned loss",
            series={"other class (y = 0)": other.tolist(), "cross-entropy": reference.tolist()},
        )
    x = torch.linspace(-2.0, 2.0, POINTS, dtype=parameter.dtype, device=parameter.device)
    reference = x**2
    at_zero = network(torch.stack([x, torch.zeros_like(x)], dim=-1))
    at_one = network(torch.stack([1 + x, torch.ones_like(x)], dim=-1))
    if with_base:
        at_zero, at_one = at_zero + reference, at_one + reference
    return LinePlot(
        x=x.tolist(),
        y=at_zero.tolist(),
        title=title,
        x_label="error (prediction - target)",
        y_label="learned loss",
        series={"target 1": at_one.tolist(), "squared error": reference.tolist()},
    )
