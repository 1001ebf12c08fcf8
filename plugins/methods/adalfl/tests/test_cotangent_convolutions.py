"""cotangent_only_convolutions: the same values as PyTorch's convolutions, first order bit for
bit, and the same derivative in the output gradient (PyTorch's own double backward is the
reference), with none of the convolutions PyTorch's double backward adds."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from twcore_method_adalfl.cotangent_convolutions import cotangent_only_convolutions
from twcore_method_adalfl.meta_gradient import forward_at_copy

from twcore.testing import plugin_harness

CASES = [
    # (function, input shape, weight shape, bias, options, input requires grad)
    (F.conv2d, (3, 4, 9, 9), (6, 2, 3, 3), True, {"stride": 2, "padding": 1, "groups": 2}, True),
    (
        F.conv2d,
        (2, 4, 8, 8),
        (4, 2, 3, 3),
        False,
        {"padding": "same", "dilation": 2, "groups": 2},
        False,
    ),
    (F.conv2d, (2, 1, 7, 7), (3, 1, 5, 5), True, {"padding": "same"}, False),
    (F.conv1d, (2, 3, 11), (5, 3, 4), True, {"padding": "valid", "stride": 3}, True),
    (F.conv3d, (2, 2, 5, 6, 5), (3, 2, 3, 2, 3), False, {"padding": (1, 0, 2)}, True),
    (
        F.conv_transpose2d,
        (3, 4, 5, 5),
        (4, 3, 3, 3),
        True,
        {"stride": 2, "padding": 1, "output_padding": 1},
        True,
    ),
    (F.conv_transpose1d, (2, 4, 6), (4, 1, 3), False, {"groups": 2, "dilation": 2}, True),
]


def _gradient_and_tangent(fn, x, weight, bias, options, ours: bool):
    """(g = J^T a on (x,) W, b, as values; u = ∂⟨g, w⟩/∂a) for fixed random a and w."""
    inputs = [t for t in (x, weight, bias) if t is not None and t.requires_grad]
    module = nn.Conv2d(1, 1, 1)  # any convolution layer switches the context on
    if ours:
        with cotangent_only_convolutions(module):
            y = fn(x, weight, bias, **options)
    else:
        y = fn(x, weight, bias, **options)
    generator = torch.Generator().manual_seed(7)
    a = torch.randn(y.shape, dtype=y.dtype, generator=generator).requires_grad_()
    g = torch.autograd.grad(y, inputs, a, create_graph=True)
    w = [torch.randn(t.shape, dtype=t.dtype, generator=generator) for t in g]
    (u,) = torch.autograd.grad(g, a, w)
    return y, [t.detach() for t in g], u


@pytest.mark.parametrize(("fn", "x_shape", "w_shape", "with_bias", "options", "x_grad"), CASES)
def test_values_and_the_derivative_in_the_cotangent_are_pytorchs(
    fn, x_shape, w_shape, with_bias, options, x_grad
) -> None:
    torch.manual_seed(0)
    x = torch.randn(x_shape, dtype=torch.float64, requires_grad=x_grad)
    weight = torch.randn(w_shape, dtype=torch.float64, requires_grad=True)
    out_channels = (
        w_shape[1] * options.get("groups", 1) if "transpose" in fn.__name__ else w_shape[0]
    )
    bias = torch.randn(out_channels, dtype=torch.float64, requires_grad=True) if with_bias else None
    y_ref, g_ref, u_ref = _gradient_and_tangent(fn, x, weight, bias, options, ours=False)
    y, g, u = _gradient_and_tangent(fn, x, weight, bias, options, ours=True)
    assert type(y.grad_fn).__name__ == "_CotangentConvolutionBackward"  # ours
    assert torch.equal(y, y_ref)
    for ours, reference in zip(g, g_ref, strict=True):
        assert torch.equal(ours, reference)  # the same aten calls, bit for bit
    torch.testing.assert_close(u, u_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
def test_uneven_same_padding_and_models_without_convolutions_are_left_to_pytorch() -> None:
    x = torch.randn(1, 1, 6, 6)
    weight = torch.randn(1, 1, 4, 4, requires_grad=True)  # 'same' with an even kernel
    with cotangent_only_convolutions(nn.Conv2d(1, 1, 1)):
        y = F.conv2d(x, weight, padding="same")
    assert type(y.grad_fn).__name__ == "ConvolutionBackward0"
    with cotangent_only_convolutions(nn.Linear(2, 2)):
        y = F.conv2d(x, weight)
    assert type(y.grad_fn).__name__ == "ConvolutionBackward0"


class _CountConvolutions(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.count += func is torch.ops.aten.convolution.default
        return func(*args, **(kwargs or {}))


def test_the_cnns_kept_backward_pass_runs_only_the_needed_convolutions() -> None:
    """On the cnn model (two convolutions; the images need no gradient), u = J_θ w needs three
    convolutions: conv(x, w_W1), then conv(ẋ, W2) and conv(x2, w_W2). PyTorch's own double
    backward runs six."""
    harness = plugin_harness("ew", task="digits", model="cnn", options={"batch_size": 8})
    model, batch = harness.components.model, next(harness.stream)
    counts = {}
    for name, forward in (("ours", forward_at_copy), ("pytorch", _plain_forward_at_copy)):
        outputs, leaves = forward(model, batch.inputs)
        heads = list(outputs)
        cotangents = [torch.randn_like(outputs[h]).requires_grad_() for h in heads]
        gradients = torch.autograd.grad(
            [outputs[h] for h in heads], list(leaves.values()), cotangents, create_graph=True
        )
        counter = _CountConvolutions()
        with counter:
            torch.autograd.grad(gradients, cotangents, [torch.ones_like(g) for g in gradients])
        counts[name] = counter.count
    assert counts == {"ours": 3, "pytorch": 6}


def _plain_forward_at_copy(model: nn.Module, inputs: torch.Tensor):
    leaves = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    return dict(torch.func.functional_call(model, leaves, (inputs,))), leaves
