"""Dynamic loss scaling for float16 training (``precision=16-mixed``).

Under float16 autocast, small gradients of the activations underflow to zero. Loss scaling
multiplies the gradient that enters the backward pass by a large factor s and divides the
parameters' gradients by s before the optimiser's step. Here s enters at the model's outputs:
:meth:`DynamicLossScale.scale_gradients` passes every output through unchanged in value (a
float16 output comes out in float32, so that whatever follows computes in float32) and
multiplies the gradient flowing back into it by s before rounding it to float16. The losses a
method computes from the outputs, and the weights it derives from them, keep their values, and
every gradient that reaches the model's parameters is scaled alike, whichever losses it came
from.

That is exact for a method whose gradients go only into the model optimiser's step, after
:meth:`DynamicLossScale.unscale` (see :attr:`twcore.contract.method.Method.loss_scaling`). A
method that computes with gradients itself (cosines, Gram matrices, lookaheads,
meta-gradients) would see them scaled, and is refused with ``precision=16-mixed``.

The schedule is ``torch.amp.GradScaler``'s: a step whose gradients are not all finite is
skipped and s is multiplied by ``backoff``; after ``growth_interval`` finite steps in a row s is
multiplied by ``growth``. The state is three numbers (s, the finite steps in a row and the
steps skipped), saved in checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor


class _ScaleGradient(torch.autograd.Function):
    """Identity in value, but a half-precision tensor comes out in float32; the gradient
    flowing back is multiplied by `scale` in float32 and only then rounded to the tensor's own
    dtype, so that a small gradient of a float32 loss survives the rounding to float16."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, scale: float) -> Tensor:
        ctx.scale, ctx.dtype = scale, tensor.dtype
        return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor.clone()

    @staticmethod
    def backward(ctx: Any, gradient: Tensor) -> tuple[Tensor, None]:
        return (gradient.float() * ctx.scale).to(ctx.dtype), None


class DynamicLossScale:
    """The loss scale s of a float16 run and its schedule (module docstring).

    Args:
        init_scale: s at the start (2¹⁶, as ``torch.amp.GradScaler``).
        growth: the factor s grows by after `growth_interval` finite steps in a row.
        backoff: the factor s shrinks by after a step with a non-finite gradient.
        growth_interval: finite steps in a row before s grows.
    """

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth: float = 2.0,
        backoff: float = 0.5,
        growth_interval: int = 2000,
    ) -> None:
        if init_scale <= 0 or growth <= 1 or not 0 < backoff < 1 or growth_interval < 1:
            raise ValueError(
                f"loss scale: init_scale={init_scale} must be > 0, growth={growth} > 1, "
                f"backoff={backoff} in (0, 1) and growth_interval={growth_interval} >= 1"
            )
        self.scale = float(init_scale)
        self.growth = growth
        self.backoff = backoff
        self.growth_interval = growth_interval
        self.finite_steps = 0
        self.skipped_steps = 0

    def scale_gradients(self, outputs: Any) -> Any:
        """`outputs` (a tensor, or a dict, tuple or list of them) unchanged in value, each
        passing s times the gradient that flows back into it. Tensors without a graph (an
        evaluation under ``no_grad``) are returned as they are."""
        if isinstance(outputs, Tensor):
            if not outputs.requires_grad:
                return outputs
            return _ScaleGradient.apply(outputs, self.scale)  # type: ignore[no-untyped-call]
        if isinstance(outputs, dict):
            return {k: self.scale_gradients(v) for k, v in outputs.items()}
        if isinstance(outputs, tuple | list):
            return type(outputs)(self.scale_gradients(v) for v in outputs)
        return outputs

    def unscale(self, parameters: Iterable[Tensor]) -> bool:
        """Divide the gradients of `parameters` by s and update the schedule; whether they are
        then all finite (if not, the caller skips the step: s has already backed off). One
        device synchronisation, for the check."""
        gradients = [p.grad for p in parameters if p.grad is not None]
        finite = True
        if gradients:
            torch._foreach_mul_(gradients, 1.0 / self.scale)
            finite = bool(torch.stack([torch.isfinite(g).all() for g in gradients]).all())
        if not finite:
            self.scale *= self.backoff
            self.finite_steps = 0
            self.skipped_steps += 1
            return False
        self.finite_steps += 1
        if self.finite_steps >= self.growth_interval:
            self.scale *= self.growth
            self.finite_steps = 0
        return True

    def state_dict(self) -> dict[str, Any]:
        """s and the schedule's counters (plain numbers)."""
        return {
            "scale": self.scale,
            "finite_steps": self.finite_steps,
            "skipped_steps": self.skipped_steps,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.scale = float(state["scale"])
        self.finite_steps = int(state["finite_steps"])
        self.skipped_steps = int(state["skipped_steps"])
