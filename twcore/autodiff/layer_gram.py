"""The Gram matrix of K objectives' gradients on a set of parameters, without forming them.

GradCos, L-DRO's interaction matrix and every weighting that needs only inner products of the
per-objective gradients G_k (rows of the [K, P] Jacobian) can have them layer by layer, from
what the forward pass already computed. For a linear layer used on N rows X [N, in] with
output gradients D_k = ∂L_k/∂(XWᵀ + b) [N, out], G_k = (D_kᵀX, D_kᵀ1) and

    ⟨G_i, G_j⟩ = ⟨X Xᵀ + 11ᵀ, D_i D_jᵀ⟩ = Σ_n D_i[n] · ((XXᵀ + 11ᵀ) D_j)[n],

so the layer's share of the Gram matrix costs K·N²·out (or, when N² > in·out, the layer's K
gradients one layer at a time, K·N·in·out, freed before the next layer): memory never grows
with K·P. A convolution is a linear layer on its unfolded input patches (N = batch ×
positions); an embedding's gradient is its output gradients summed per token, so its share is
that of the distinct tokens' sums. The K output gradients of every recorded layer come from one
vectorised backward pass of the K losses to the layers' outputs, which computes no parameter
gradient.

Supported layers: ``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d`` (``groups=1``, zero padding:
numeric, ``"valid"``, or ``"same"`` where it pads evenly), ``nn.Embedding`` (without
``max_norm`` or ``scale_grad_by_freq``). Every other parameter in the set — a
normalisation layer's scale and shift, a custom module's weights, a layer used some other way —
takes the fallback: its K gradient rows come from the same backward pass and enter the Gram
matrix directly (memory K × its size; for a normalisation layer, a few vectors). A layer is
recorded only if all its parameters are in the set and it is used only through its own forward
(a weight tied to another use must go through the fallback: pass ``fallback=[...]``).

    recorder = GramRecorder(shared_params, model)
    with recorder:
        losses = torch.stack(objective_losses(model(x)))
    gram = recorder.gram(losses)  # [K, K], as per_objective_grads(losses, shared_params) would

Not for data-parallel runs: a sharded module sees only its process's rows, and the Gram matrix
of the global gradients needs every process's; :meth:`GramRecorder.usable` says False there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional
from torch.nn.utils import parametrize

SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding)
"""The layer types whose share of the Gram matrix is computed from inputs and output
gradients."""


@dataclass
class _Call:
    """One forward call of a recorded layer: its input and its output, with their version
    counters when recorded (a later in-place change of either is an error)."""

    source: Tensor
    output: Tensor
    source_version: int
    output_version: int


@dataclass
class _Layer:
    module: nn.Module
    params: list[Tensor]
    calls: list[_Call] = field(default_factory=list)


def _records(module: nn.Module) -> bool:
    """Whether `module`'s share can be computed from its inputs and output gradients: one of
    the supported types exactly (a subclass may have another forward, e.g. attention's output
    projection), its own plain ``weight`` (and ``bias``), no parametrisation or pre-hook that
    rewrites them (weight or spectral normalisation)."""
    if type(module) not in SUPPORTED:
        return False
    names = {name for name, _ in module.named_parameters(recurse=False)}
    if names not in ({"weight"}, {"weight", "bias"}):
        return False
    if parametrize.is_parametrized(module) or module._forward_pre_hooks:
        return False
    if isinstance(module, nn.Embedding):
        # max_norm rewrites the weight in the forward; scale_grad_by_freq rescales its gradient
        return module.max_norm is None and not module.scale_grad_by_freq
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        return (
            module.groups == 1
            and module.padding_mode == "zeros"
            and _symmetric_padding(module) is not None
        )
    return isinstance(module, nn.Linear)


def _symmetric_padding(conv: nn.Conv1d | nn.Conv2d) -> tuple[int, ...] | None:
    """The zeros each side of each spatial dimension, or None where "same" pads unevenly (an
    even effective kernel: unfold cannot express it)."""
    if conv.padding == "valid":
        return (0,) * len(conv.kernel_size)
    if conv.padding == "same":
        spans = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
        return tuple(span // 2 for span in spans) if all(s % 2 == 0 for s in spans) else None
    return tuple(int(p) for p in conv.padding)


def _input_rows(module: nn.Module, inputs: Tensor) -> Tensor:
    """The rows the layer multiplies by its weight: [N, in] (token ids [N] for an embedding)."""
    if isinstance(module, nn.Embedding):
        return inputs.reshape(-1)
    if isinstance(module, nn.Linear):
        return inputs.reshape(-1, inputs.shape[-1])
    conv = module
    assert isinstance(conv, nn.Conv1d | nn.Conv2d)
    images = inputs if inputs.dim() == conv.weight.dim() else inputs.unsqueeze(0)
    sides = _symmetric_padding(conv)
    assert sides is not None  # only such layers are recorded
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    if isinstance(conv, nn.Conv1d):  # a 1-D convolution is a 2-D one of height 1
        images = images.unsqueeze(2)
        kernel, stride = (1, conv.kernel_size[0]), (1, conv.stride[0])
        padding, dilation = (0, sides[0]), (1, conv.dilation[0])
    else:
        kernel, stride = tuple(conv.kernel_size), tuple(conv.stride)
        padding, dilation = sides, tuple(conv.dilation)
    patches = functional.unfold(
        images, kernel, dilation=dilation, padding=padding, stride=stride
    )  # [B, C·k, L]
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


def _output_rows(module: nn.Module, grads: Tensor) -> Tensor:
    """Output gradients [K, *output] as rows [K, N, out] matching :func:`_input_rows`."""
    num = grads.shape[0]
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        channels = module.out_channels
        batched = grads if grads.dim() == module.weight.dim() + 1 else grads.unsqueeze(1)
        # [K, B, out, *positions] -> [K, B·positions, out]
        moved = batched.reshape(num, batched.shape[1], channels, -1).transpose(2, 3)
        return moved.reshape(num, -1, channels)
    return grads.reshape(num, -1, grads.shape[-1])


def _linear_share(rows: Tensor, grads: Tensor, bias: bool) -> Tensor:
    """⟨G_i, G_j⟩ of a linear map (weight, and bias if `bias`) used on rows [N, in] with output
    gradients [K, N, out]: ⟨XXᵀ + 11ᵀ, D_i D_jᵀ⟩."""
    kernel = rows @ rows.T
    if bias:
        kernel = kernel + 1
    mixed = torch.matmul(kernel, grads)  # [K, N, out]
    return torch.einsum("kno,jno->kj", grads, mixed)


def _prefers_kernel(module: nn.Module, calls: Sequence[_Call], num: int) -> bool:
    """Whether the layer's share is cheaper from its N rows (N²·in + K·N²·out) than from its K
    gradients (K·N·in·out, what the rows cost): N < K·in·out / (in + K·out). Embeddings always
    use their per-token sums."""
    if isinstance(module, nn.Embedding):
        return True
    weight = module.weight
    assert isinstance(weight, Tensor)
    outputs = int(weight.shape[0])
    width = weight.numel() // outputs  # in, or channels × kernel positions
    rows = sum(call.output.numel() for call in calls) // outputs
    return bool(rows * (width + num * outputs) < num * width * outputs)


def _embedding_share(module: nn.Embedding, tokens: Tensor, grads: Tensor) -> Tensor:
    """⟨G_i, G_j⟩ of an embedding: the output gradients summed per distinct token."""
    if module.padding_idx is not None:  # its row gets no gradient
        kept = tokens != module.padding_idx
        tokens, grads = tokens[kept], grads[:, kept]
    distinct, slot = torch.unique(tokens, return_inverse=True)
    sums = grads.new_zeros(len(grads), len(distinct), grads.shape[-1])
    sums.index_add_(1, slot, grads)
    flat = sums.reshape(len(grads), -1)
    return flat @ flat.T


class GramRecorder:
    """Record a forward pass, then return the Gram matrix of the K losses' gradients on
    `params` (see the module docstring).

    Args:
        params: the parameters whose gradients the Gram matrix is of (e.g. the shared trunk).
        modules: where to look for the layers that own them (a model, or several modules).
        fallback: parameters to treat by their gradient rows even if a supported layer owns
            them (e.g. a weight tied to another use).
        always_kernel: take every recorded layer's share from its rows' kernel, even where its
            K gradients would be cheaper: memory independent of K·P at any cost in time.
    """

    def __init__(
        self,
        params: Sequence[Tensor],
        modules: nn.Module | Iterable[nn.Module],
        *,
        fallback: Iterable[Tensor] = (),
        always_kernel: bool = False,
    ) -> None:
        self.params = list(params)
        self.always_kernel = always_kernel
        wanted = {id(p) for p in self.params}
        forced = {id(p) for p in fallback}
        roots = [modules] if isinstance(modules, nn.Module) else list(modules)
        found: dict[int, nn.Module] = {}
        for root in roots:
            for module in root.modules():
                found.setdefault(id(module), module)
        # A parameter two modules own (tied weights) has cross terms no layer sees alone.
        owners: dict[int, int] = {}
        for module in found.values():
            for param in module.parameters(recurse=False):
                owners[id(param)] = owners.get(id(param), 0) + 1
        self._layers: list[_Layer] = []
        covered: set[int] = set()
        for module in found.values():
            # every parameter of the layer, frozen ones too: its share counts them all
            own: list[Tensor] = list(module.parameters(recurse=False))
            if (
                own
                and _records(module)
                and all(id(p) in wanted and id(p) not in forced and owners[id(p)] == 1 for p in own)
            ):
                self._layers.append(_Layer(module, own))
                covered.update(id(p) for p in own)
        self.fallback = [p for p in self.params if id(p) not in covered]
        self.kernel_layers: list[nn.Module] = []
        """The layers the last :meth:`gram` took from their rows' kernel (the others were
        differentiated directly)."""
        self._hooks: list[Any] = []

    @property
    def recorded_layers(self) -> list[nn.Module]:
        """The layers whose share comes from inputs and output gradients."""
        return [layer.module for layer in self._layers]

    @staticmethod
    def usable() -> bool:
        """False in a data-parallel run (see the module docstring)."""
        return not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)

    def __enter__(self) -> GramRecorder:
        for layer in self._layers:
            layer.calls.clear()
            self._hooks.append(layer.module.register_forward_hook(self._hook(layer)))
        return self

    def __exit__(self, *exc: object) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def _hook(self, layer: _Layer) -> Any:
        def record(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            # Under functional_call the layer computes with other tensors than its parameters:
            # that use is not theirs.
            current = list(module.parameters(recurse=False))
            same = len(current) == len(layer.params) and all(
                a is b for a, b in zip(current, layer.params, strict=True)
            )
            if same and torch.is_grad_enabled() and output.requires_grad:
                source = inputs[0]
                layer.calls.append(_Call(source, output, source._version, output._version))

        return record

    def gram(self, losses: Tensor, *, retain_graph: bool = True) -> Tensor:
        """⟨∇L_i, ∇L_j⟩ on the parameters [K, K], for losses [K] computed inside the recording.

        One vectorised backward pass (K rows; a loop of K if an op has no batching rule) to
        the recorded layers' outputs and the fallback parameters; with ``retain_graph`` the
        losses' graph stays for the weighted backward. A recorded layer whose K gradients are
        cheaper than its rows' kernel (N ≥ K·in·out / (in + K·out): a convolution over many
        positions), or that the forward pass reached without a recorded call (recomputed under
        checkpointing), is differentiated directly instead, in the same pass. Computed in
        float32 or wider, outside autocast."""
        if losses.dim() != 1 or losses.numel() == 0:
            raise ValueError(f"losses must have shape [K], got {tuple(losses.shape)}")
        num = losses.shape[0]
        # Layers whose K gradients cost less than their rows' kernel (a convolution's many
        # positions), and those the forward reached unrecorded, are differentiated directly.
        kernel_layers = [
            layer
            for layer in self._layers
            if layer.calls
            and (self.always_kernel or _prefers_kernel(layer.module, layer.calls, num))
        ]
        chosen = {id(layer) for layer in kernel_layers}
        self.kernel_layers = [layer.module for layer in kernel_layers]
        calls = [(layer, call) for layer in kernel_layers for call in layer.calls]
        rest = [p for layer in self._layers if id(layer) not in chosen for p in layer.params]
        direct = self.fallback + [p for p in rest if p.requires_grad]
        for layer, call in calls:
            if (call.source._version, call.output._version) != (
                call.source_version,
                call.output_version,
            ):
                raise RuntimeError(
                    f"the input or output of {type(layer.module).__name__} was changed in "
                    "place after the layer ran (e.g. ReLU(inplace=True) or += after it); its "
                    "Gram share would be wrong: avoid the in-place op, or pass the layer's "
                    "parameters as fallback"
                )
        dtype = torch.promote_types(losses.dtype, torch.float32)
        gram = torch.zeros(num, num, dtype=dtype, device=losses.device)
        targets = [call.output for _, call in calls] + direct
        if not targets or not losses.requires_grad:
            return gram
        with torch.autocast(losses.device.type, enabled=False):
            grads = _batched_grads(losses, targets, retain_graph=retain_graph)
            by_layer: dict[int, tuple[_Layer, list[Tensor], list[Tensor]]] = {}
            for (layer, call), grad in zip(calls, grads[: len(calls)], strict=True):
                if grad is None:
                    continue
                entry = by_layer.setdefault(id(layer), (layer, [], []))
                entry[1].append(_input_rows(layer.module, call.source.detach()))
                entry[2].append(_output_rows(layer.module, grad.to(dtype)))
            for layer, rows, outputs in by_layer.values():
                # Several calls of one layer add their gradients: their rows stack.
                stacked_rows, stacked_grads = torch.cat(rows), torch.cat(outputs, dim=1)
                if isinstance(layer.module, nn.Embedding):
                    share = _embedding_share(layer.module, stacked_rows, stacked_grads)
                else:
                    bias = getattr(layer.module, "bias", None) is not None
                    share = _linear_share(stacked_rows.to(dtype), stacked_grads, bias)
                gram = gram + share
            for grad in grads[len(calls) :]:
                if grad is not None:
                    flat = grad.reshape(num, -1).to(dtype)
                    gram = gram + flat @ flat.T
        return gram

    def clear(self) -> None:
        """Forget the recorded calls (their tensors keep the forward's activations alive)."""
        for layer in self._layers:
            layer.calls.clear()


def _batched_grads(
    losses: Tensor, targets: list[Tensor], *, retain_graph: bool
) -> tuple[Tensor | None, ...]:
    """The K rows of the losses' gradients with respect to each target, [K, *target] or None
    where no loss reaches it: one vectorised backward pass, or K passes if batching fails."""
    num = losses.shape[0]
    selectors = torch.eye(num, dtype=losses.dtype, device=losses.device)
    try:
        return torch.autograd.grad(
            losses,
            targets,
            grad_outputs=selectors,
            is_grads_batched=True,
            retain_graph=True,  # a failure halfway must leave the graph for the loop
            allow_unused=True,
        )
    except RuntimeError:
        rows = [
            torch.autograd.grad(
                losses,
                targets,
                grad_outputs=selectors[k],
                retain_graph=retain_graph or k < num - 1,
                allow_unused=True,
            )
            for k in range(num)
        ]
    columns: list[Tensor | None] = []
    for index, target in enumerate(targets):
        parts = [row[index] for row in rows]
        if all(part is None for part in parts):
            columns.append(None)
        else:
            columns.append(
                torch.stack([torch.zeros_like(target) if p is None else p for p in parts])
            )
    return tuple(columns)
