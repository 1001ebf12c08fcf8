"""Convolutions whose backward pass is differentiated in the output gradient alone.

AdaLFL differentiates the model's backward pass once more, but only in the output cotangent:
u = J_θ w = ∂⟨g(a), w⟩/∂a (:mod:`~twcore_method_adalfl.meta_gradient`). For a convolution
y = conv(x, W) + b that derivative is one or two convolutions, conv(ġ_x, W) + conv(x, ġ_W) + ġ_b,
the tangent of y. PyTorch's own second derivative of a convolution (torch 2.13,
``_convolution_double_backward``) also computes the gradients with respect to the
convolution's input and weight whenever the incoming terms are defined, whatever the engine
asks for: on the ``cnn`` model that is about half the time of the pass (the plugin's
``benchmarks/conv_double_backward.py`` traces it).

Inside :func:`cotangent_only_convolutions` every ``conv1d/2d/3d`` and ``conv_transpose1d/2d/3d``
call records :class:`_CotangentConvolution` instead. Its forward pass and first-order backward
pass are the same aten calls as PyTorch's (``convolution``, then ``convolution_backward`` with
the same output mask), so every value is bit for bit the same. Its backward pass records
:class:`_CotangentConvolutionGradient`, whose own derivative is taken in the output gradient
only (the input and weight it reads are constants there). So a graph built with
``create_graph`` inside the context can be differentiated in its cotangents, not in θ or in the
inputs: exactly what AdaLFL needs, and never used elsewhere. Calls whose padding is not a plain
number (``padding='same'`` that would need uneven padding) or whose input has no batch
dimension go to PyTorch unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

Parameters = tuple[list[int], list[int], list[int], bool, list[int], int]
"""(stride, padding, dilation, transposed, output_padding, groups), as aten.convolution takes
them."""


class _CotangentConvolution(torch.autograd.Function):
    """aten.convolution; its backward pass records :class:`_CotangentConvolutionGradient`."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, parameters: Parameters
    ) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.parameters = parameters
        ctx.bias_sizes = None if bias is None else list(bias.shape)
        output: Tensor = torch.ops.aten.convolution(x, weight, bias, *parameters)
        return output

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        mask = (needs[0], needs[1], ctx.bias_sizes is not None and needs[2])
        # torch.autograd.Function.apply is unannotated.
        gradients = _CotangentConvolutionGradient.apply(  # type: ignore[no-untyped-call]
            grad_output, x.detach(), weight.detach(), ctx.bias_sizes, ctx.parameters, mask
        )
        return (*gradients, None)


class _CotangentConvolutionGradient(torch.autograd.Function):
    """aten.convolution_backward; its derivative is taken in the output gradient alone."""

    @staticmethod
    def forward(
        ctx: Any,
        grad_output: Tensor,
        x: Tensor,
        weight: Tensor,
        bias_sizes: list[int] | None,
        parameters: Parameters,
        mask: tuple[bool, bool, bool],
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        ctx.save_for_backward(x, weight)
        ctx.parameters = parameters
        ctx.output_shape = grad_output.shape
        return tuple(
            torch.ops.aten.convolution_backward(
                grad_output, x, weight, bias_sizes, *parameters, list(mask)
            )
        )

    @staticmethod
    def backward(
        ctx: Any,
        grad_x: Tensor | None,
        grad_weight: Tensor | None,
        grad_bias: Tensor | None,
    ) -> tuple[Tensor | None, ...]:
        # The tangent of conv(x, W) + b along (grad_x, grad_weight, grad_bias).
        x, weight = ctx.saved_tensors
        parameters = ctx.parameters
        tangent = None
        if grad_x is not None:
            tangent = torch.ops.aten.convolution(grad_x, weight, None, *parameters)
        if grad_weight is not None:
            term = torch.ops.aten.convolution(x, grad_weight, None, *parameters)
            tangent = term if tangent is None else tangent + term
        if grad_bias is not None:
            spread = grad_bias.reshape([1, -1] + [1] * (x.dim() - 2)).expand(ctx.output_shape)
            tangent = spread if tangent is None else tangent + spread
        return tangent, None, None, None, None, None


def _spatial(value: int | Sequence[int], dims: int) -> list[int]:
    return [int(value)] * dims if isinstance(value, int) else [int(v) for v in value]


def _padding(
    padding: str | int | Sequence[int], weight: Tensor, dilation: list[int]
) -> list[int] | None:
    """Numeric padding, or None where PyTorch would pad unevenly ('same' with an even span)."""
    dims = weight.dim() - 2
    if padding == "valid":
        return [0] * dims
    if padding == "same":
        spans = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:], strict=True)]
        return None if any(span % 2 for span in spans) else [span // 2 for span in spans]
    return _spatial(padding, dims)  # type: ignore[arg-type]


def _convolution_call(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> tuple[Tensor, Tensor, Tensor | None, Parameters] | None:
    dims = weight.dim() - 2
    dilations = _spatial(dilation, dims)
    paddings = _padding(padding, weight, dilations)
    if paddings is None:
        return None
    parameters = (_spatial(stride, dims), paddings, dilations, False, [0] * dims, int(groups))
    return x, weight, bias, parameters


def _transposed_call(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    groups: int = 1,
    dilation: int | Sequence[int] = 1,
) -> tuple[Tensor, Tensor, Tensor | None, Parameters]:
    dims = weight.dim() - 2
    parameters = (
        _spatial(stride, dims),
        _spatial(padding, dims),
        _spatial(dilation, dims),
        True,
        _spatial(output_padding, dims),
        int(groups),
    )
    return x, weight, bias, parameters


_CALLS: dict[Callable[..., Any], Callable[..., Any]] = {
    torch.conv1d: _convolution_call,
    torch.conv2d: _convolution_call,
    torch.conv3d: _convolution_call,
    torch.conv_transpose1d: _transposed_call,
    torch.conv_transpose2d: _transposed_call,
    torch.conv_transpose3d: _transposed_call,
}


class _CotangentOnlyConvolutions(TorchFunctionMode):
    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        normalise = _CALLS.get(func)
        if normalise is not None and (x := args[0] if args else kwargs.get("input")) is not None:
            rest = args[1:] if args else ()
            named = {k: v for k, v in kwargs.items() if k != "input"}
            call = normalise(x, *rest, **named)
            # An unbatched input ([C, ...]) is left to PyTorch, which adds the batch dim itself.
            if call is not None and call[0].dim() == call[1].dim():
                # torch.autograd.Function.apply is unannotated.
                return _CotangentConvolution.apply(*call)  # type: ignore[no-untyped-call]
        return func(*args, **kwargs)


@contextmanager
def cotangent_only_convolutions(model: nn.Module) -> Iterator[None]:
    """Within it, `model`'s convolutions record a backward pass that is differentiated in its
    output gradient alone (module docstring). Models without convolution layers run as they
    are (no per-op interception)."""
    if not any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()):
        yield
        return
    with _CotangentOnlyConvolutions():
        yield
