"""Which convolutions run when AdaLFL differentiates a CNN's backward pass once more.

    python3 plugins/methods/adalfl/benchmarks/conv_double_backward.py \
        [--batch-size 64] [--repeats 5]

AdaLFL's meta-gradient needs u = J_θ w: the kept backward graph of the learned loss (g as a
function of the output cotangent a), differentiated once more in a. For each convolution that
only needs the output tangent, conv(input, w_weight) (+ conv(input tangent, weight)). This script
traces every convolution PyTorch dispatches during that pass on the `cnn` model and `mnist`
batch, with its time, and names what each result is: an output tangent (needed), or a
gradient with respect to the convolution's input or weight (asked for by nobody: the images do
not require a gradient and the weights are not among the requested inputs). It does so twice:
with PyTorch's own double backward of a convolution, and with the one AdaLFL records
(``cotangent_only_convolutions``), which runs only the needed convolutions.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import Any

import torch
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode
from twcore_method_adalfl.cotangent_convolutions import cotangent_only_convolutions

from twcore.testing import plugin_harness


class ConvolutionTrace(TorchDispatchMode):
    """Records (input shape, weight shape, transposed, result shape, ms) of every convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[tuple, tuple, bool, tuple, float]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        start = time.perf_counter()
        result = func(*args, **(kwargs or {}))
        if func is torch.ops.aten.convolution.default:
            elapsed = 1000 * (time.perf_counter() - start)
            self.calls.append(
                (
                    tuple(args[0].shape),
                    tuple(args[1].shape),
                    bool(args[6]),
                    tuple(result.shape),
                    elapsed,
                )
            )
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    harness = plugin_harness(
        "ew", task="mnist", model="cnn", options={"batch_size": args.batch_size}
    )
    model, batch = harness.components.model, next(harness.stream)
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    weights = {tuple(m.weight.shape) for m in convolutions}
    leaves = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    tangents = {n: torch.randn_like(p) for n, p in leaves.items()}
    for label, context in (
        ("PyTorch's double backward", contextlib.nullcontext),
        ("AdaLFL's (cotangent_only_convolutions)", lambda: cotangent_only_convolutions(model)),
    ):
        trace, total = _trace(model, batch.inputs, leaves, tangents, context, args.repeats)
        print(f"\n{label}, cnn on mnist, batch {args.batch_size}: the pass took {total:.2f} ms\n")
        print("| input | weight | transposed | result | what it is | ms |")
        print("|---|---|---|---|---|---|")
        wasted = 0.0
        for input_shape, weight_shape, transposed, result, ms in trace.calls:
            swapped = (result[1], result[0], *result[2:])  # computed with batch, channels swapped
            if result in weights or swapped in weights:
                kind = "weight gradient (not asked for)"
            elif transposed:
                kind = "input gradient (not asked for)"
            else:
                kind = "output tangent (needed)"
            wasted += ms if "not asked" in kind else 0.0
            row = (input_shape, weight_shape, transposed, result, kind, f"{ms:.2f}")
            print("| " + " | ".join(str(cell) for cell in row) + " |")
        print(f"\nconvolutions nobody asked for: {wasted:.2f} of {total:.2f} ms")


def _trace(model, inputs, leaves, tangents, context, repeats: int):
    """(the trace of the last of `repeats` passes u = J_θ w, its ms), with the forward pass and
    the create_graph backward pass run inside `context`."""
    trace = ConvolutionTrace()
    for _ in range(repeats):  # the last repeat is reported (warm caches)
        with context():
            outputs = functional_call(model, leaves, (inputs,))
        heads = list(outputs)
        cotangents = [torch.randn_like(outputs[h], requires_grad=True) for h in heads]
        gradients = torch.autograd.grad(
            [outputs[h] for h in heads],
            list(leaves.values()),
            grad_outputs=cotangents,
            create_graph=True,
        )
        trace.calls.clear()
        start = time.perf_counter()
        with trace:
            torch.autograd.grad(gradients, cotangents, grad_outputs=list(tangents.values()))
        total = 1000 * (time.perf_counter() - start)
    return trace, total


if __name__ == "__main__":
    main()
