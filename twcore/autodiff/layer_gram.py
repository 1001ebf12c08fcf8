"""The Gram matrix of K objectives' gradients on a set of parameters, without forming them.

GradCos, L-DRO's interaction matrix and every weighting that needs only inner products of the
per-objective gradients G_k (rows of the [K, P] Jacobian) can have them layer by layer, from
what the forward pass already computed. For a linear layer used on N rows X [N, in] with
output gradients D_k = ∂L_k/∂(XWᵀ + b) [N, out], G_k = (D_kᵀX, D_kᵀ1) and

    ⟨G_i, G_j⟩ = ⟨X Xᵀ + 11ᵀ, D_i D_jᵀ⟩ = Σ_n D_i[n] · ((XXᵀ + 11ᵀ) D_j)[n],

so the layer's share of the Gram matrix costs K·N²·out (or, when N² > in·out, the layer's K
gradients, K·N·in·out): memory grows with K times the recorded layers' outputs, and with K·P
only for the layers differentiated directly. A convolution is a linear layer on its unfolded
input patches (N = batch × positions); an embedding's gradient is its output gradients summed
per token, so its share is that of the distinct tokens' sums. The K output gradients of every
recorded layer come from one vectorised backward pass of the K losses to the layers' outputs,
which computes no parameter gradient. Given the module all of them run inside (``cut=``, a
model's trunk), the losses are first taken to its output through the heads — a vectorised pass
would run all K heads for each of the K rows — and only the K cotangents go through the trunk
vectorised. In one backward pass of the losses' sum, each operation reading the cut's output
(a head's first layer) hands the output its gradient; a hook on each keeps what it hands, so
where each of those operations is reached by one loss the pass gives each loss's gradient at the
output; otherwise each loss is differentiated alone. What the Gram matrix
needed also gives the step's weighted gradient Σ_k w_k ∇L_k
(:meth:`GramRecorder.weighted_gradients`: each layer's rows times Σ_k w_k D_k), so no second
backward pass runs through the recorded layers, and the one pass through the heads gives
their own gradients (:meth:`GramRecorder.own_gradients`), so none runs through them either.

Supported layers: ``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d`` (``groups=1``, zero padding:
numeric, ``"valid"``, or ``"same"`` where it pads evenly), ``nn.Embedding`` (without
``max_norm`` or ``scale_grad_by_freq``). Every other parameter in the set — a
normalisation layer's scale and shift, a custom module's weights, a layer used some other way —
takes the fallback: its K gradient rows come from the same backward pass and enter the Gram
matrix directly (memory K × its size; for a normalisation layer, a few vectors). A layer is
recorded only if all its parameters are in the set and it is used only through its own forward
(a weight tied to another use must go through the fallback: pass ``fallback=[...]``).

    recorder = GramRecorder(shared_params, model, cut=model.trunk)
    with recorder:
        losses = torch.stack(objective_losses(model(x)))
    gram = recorder.gram(losses)  # [K, K], as per_objective_grads(losses, shared_params) would

Which path is cheaper — this one, or the K gradient rows of one vectorised backward pass —
depends on the layers' shapes and K: :meth:`GramRecorder.path_costs` estimates both from the
recorded forward pass (multiply-adds, never timings, so the choice is the same on every run).

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

from twcore.autodiff.graph import splits_into_scalars
from twcore.autodiff.per_objective import per_objective_grads

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
class _Kept:
    """What :meth:`GramRecorder.gram` computed that the step's weighted gradient needs again:
    each kernel layer's rows [N, in] (token ids for an embedding) and output gradients
    [K, N, out], and each directly differentiated parameter's K gradients [K, *shape]."""

    layers: list[tuple[nn.Module, Tensor, Tensor]]
    direct: list[tuple[Tensor, Tensor]]
    others: dict[int, tuple[Tensor, Tensor | None, list[int]]] = field(default_factory=dict)
    """With the cut's one pass through the heads: every other leaf the losses reach without
    the cut's output (the heads' parameters), by id: the leaf, the gradient of the losses'
    sum on it and the losses that reach it."""


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
        kernel += 1
    mixed = torch.matmul(kernel, grads)  # [K, N, out]
    # One [K, N·out] × [N·out, K] product (an einsum here took a slower batched route).
    return mixed.flatten(1) @ grads.flatten(1).T


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


@dataclass(frozen=True)
class PathCosts:
    """Estimated multiply-adds of the work in which the two ways to a Gram-based step differ
    (what both share — the K objectives' backward pass to the layers' outputs, the fallback
    parameters' rows — is left out).

    Attributes:
        rows: for each recorded layer, its K gradients (K·N·in·out), their Gram matrix (K²·P)
            and the weighted combination written to ``.grad`` (K·P); for each other layer of
            the modules with a trainable parameter (a head: the objectives' own parameters),
            its K gradient rows, their combination and K rows back through it.
        gram: each recorded layer's share of the Gram matrix (the cheaper of its rows' kernel
            and its K gradients, as :meth:`GramRecorder.gram` chooses) and its share of the
            step's weighted gradient from what that left (Σ_k w_k D_k and one weight gradient,
            or the weighted sum of its K gradients); each other layer's one gradient, and K
            rows back through it (one row per loss through a cut).
    """

    rows: int
    gram: int

    @property
    def cheaper(self) -> str:
        """``"gram"`` or ``"rows"``: the path with fewer estimated multiply-adds (gram on a
        tie)."""
        return "gram" if self.gram <= self.rows else "rows"


def _other_layer_costs(
    module: nn.Module, calls: Sequence[_Call], num: int, *, through_cut: bool
) -> PathCosts:
    """:class:`PathCosts` of a layer outside the set (a head): the rows path takes its K
    gradient rows and sends K rows back through it; the Gram path its one gradient, and back
    through it K rows, or with a cut one row per loss that reads it."""
    weight = module.weight
    assert isinstance(weight, Tensor)
    size = sum(p.numel() for p in module.parameters(recurse=False))
    if isinstance(module, nn.Embedding):
        gradient = sum(call.source.numel() for call in calls) * int(weight.shape[1])
        input_gradient = 0
    else:
        outputs = int(weight.shape[0])
        gradient = sum(call.output.numel() for call in calls) // outputs * weight.numel()
        reads_trunk = any(call.source.requires_grad for call in calls)
        input_gradient = gradient if reads_trunk else 0
    rows = num * (gradient + input_gradient) + num * size
    back = input_gradient if through_cut else num * input_gradient
    return PathCosts(rows, gradient + back)


def _layer_costs(module: nn.Module, calls: Sequence[_Call], num: int, kernel: bool) -> PathCosts:
    """:class:`PathCosts` of one recorded layer for K = `num` objectives."""
    weight = module.weight
    assert isinstance(weight, Tensor)
    size = sum(p.numel() for p in module.parameters(recurse=False))
    if isinstance(module, nn.Embedding):
        dim = int(weight.shape[1])
        tokens = sum(call.source.numel() for call in calls)
        distinct = min(tokens, int(weight.shape[0]))
        rows = num * tokens * dim + num * num * size + num * size
        # the per-token sums, their inner products, Σ_k w_k D_k and its per-token sum
        gram = num * tokens * dim + num * num * distinct * dim + num * tokens * dim + tokens * dim
        return PathCosts(rows, gram)
    outputs = int(weight.shape[0])
    width = weight.numel() // outputs  # in, or channels × kernel positions
    count = sum(call.output.numel() for call in calls) // outputs  # N
    gradients = num * count * width * outputs
    rows = gradients + num * num * size + num * size
    if not kernel:  # the K gradients, their inner products and their weighted sum: as the rows
        return PathCosts(rows, rows)
    # XXᵀ, then (XXᵀ)D_j for each j, then the K² inner products; Σ_k w_k D_k, then Xᵀ(Σ w D)
    from_kernel = count * count * (width + num * outputs) + num * num * count * outputs
    return PathCosts(rows, from_kernel + num * count * outputs + count * width * outputs)


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
        cut: the module whose single output carries every way the losses depend on `params`
            (a model's trunk; its output the shared representation the heads read). The K
            losses are then taken to that output through the heads — in one backward pass of
            their sum where each operation reading the output feeds one loss
            (:attr:`used_readers`), else one pass per loss; never the vectorised pass
            that runs every head for every loss (K² head backwards) — and only the K
            cotangents go through the cut module in one vectorised pass. Used on a step where
            it holds as far as the recorder can see: every one of `params` is the cut's (and
            owned by no module outside it), `cut` ran once, every recorded layer ran inside
            it, and the losses are K stacked scalars
            (``torch.stack([...])``); otherwise the one vectorised pass from the losses. A
            parameter of the cut used again outside it (a head reading a trunk weight) drops
            the cut where the walk of the losses' graph down to the cut's output meets it (the
            output unchanged since the cut ran); a use below that output (before the cut ran)
            is invisible to the recorder: give no cut for such a model. The pass through the
            heads reaches the cut's output, so a hook on that tensor sees the losses' summed
            gradient there.
    """

    def __init__(
        self,
        params: Sequence[Tensor],
        modules: nn.Module | Iterable[nn.Module],
        *,
        fallback: Iterable[Tensor] = (),
        always_kernel: bool = False,
        cut: nn.Module | None = None,
    ) -> None:
        self.params = list(params)
        self.always_kernel = always_kernel
        wanted = self._param_ids = {id(p) for p in self.params}
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
        # The other layers with a trainable parameter (the objectives' own: heads), whose
        # calls only :meth:`path_costs` reads.
        self._others = [
            _Layer(module, list(module.parameters(recurse=False)))
            for module in found.values()
            if type(module) in SUPPORTED
            and not any(id(p) in wanted for p in module.parameters(recurse=False))
            and any(p.requires_grad for p in module.parameters(recurse=False))
        ]
        self.kernel_layers: list[nn.Module] = []
        """The layers the last :meth:`gram` took from their rows' kernel (the others were
        differentiated directly)."""
        self._hooks: list[Any] = []
        inside = {id(module) for module in cut.modules()} if cut is not None else set()
        owners_inside = all(
            id(module) in inside
            for module in found.values()
            if any(id(p) in wanted for p in module.parameters(recurse=False))
        )
        in_cut = {id(p) for p in cut.parameters()} if cut is not None else set()
        holds = owners_inside and wanted <= in_cut
        self.cut = cut if cut is not None and holds else None
        """The cut module in use (None if none was given, or one of the parameters is not the
        cut's or is also owned by a module outside it)."""
        # Its parameters, as the layers are, found once (whether each trains is read each step).
        self._cut_params = list(self.cut.parameters()) if self.cut is not None else []
        self._kept: _Kept | None = None
        self._cut_outputs: list[Tensor] = []
        self._cut_version = -1
        self._cut_depth = 0
        self._outside_cut = False
        self.used_cut = False
        """Whether the last :meth:`gram` went through the cut (see ``cut``)."""
        self.used_readers = False
        """Whether the last :meth:`gram` took the losses to the cut's output in one pass
        through the operations reading it (each reached by one loss), rather than one pass per
        loss."""

    @property
    def recorded_layers(self) -> list[nn.Module]:
        """The layers whose share comes from inputs and output gradients."""
        return [layer.module for layer in self._layers]

    @staticmethod
    def usable() -> bool:
        """False in a data-parallel run (see the module docstring)."""
        return not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)

    tally_others: bool = True
    """Whether a recording also notes the calls of the layers outside the set (the heads),
    which only :meth:`path_costs` reads: turn it off once the path is chosen."""

    def __enter__(self) -> GramRecorder:
        others = self._others if self.tally_others else []
        for layers, recorded in ((self._layers, True), (others, False)):
            for layer in layers:
                layer.calls.clear()
                hook = self._hook(layer, recorded=recorded)
                self._hooks.append(layer.module.register_forward_hook(hook))
        self._reset_step()
        if self.cut is not None:
            self._hooks.append(self.cut.register_forward_pre_hook(self._enter_cut))
            # always_call: a forward that raises still leaves the cut
            self._hooks.append(self.cut.register_forward_hook(self._leave_cut, always_call=True))
        return self

    def _enter_cut(self, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        self._cut_depth += 1

    def _leave_cut(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        self._cut_depth -= 1
        if self._cut_depth == 0 and torch.is_grad_enabled() and output is not None:
            self._cut_outputs.append(output)
            self._cut_version = output._version if isinstance(output, Tensor) else -1

    def _reset_step(self) -> None:
        self._kept = None
        self._cut_outputs.clear()
        self._cut_depth = 0
        self._outside_cut = False

    def __exit__(self, *exc: object) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def _hook(self, layer: _Layer, *, recorded: bool) -> Any:
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
                if recorded and self._cut_depth == 0:
                    self._outside_cut = True

        return record

    def path_costs(self, losses: Tensor) -> PathCosts:
        """The estimated cost of each path to a step on these K losses, from the layers
        recorded since entering (:class:`PathCosts`): call it after the forward pass and
        before :meth:`gram` or :meth:`clear`."""
        num = len(losses)
        total = PathCosts(0, 0)
        for layer in self._layers:
            if layer.calls:
                kernel = self.always_kernel or _prefers_kernel(layer.module, layer.calls, num)
                costs = _layer_costs(layer.module, layer.calls, num, kernel)
                total = PathCosts(total.rows + costs.rows, total.gram + costs.gram)
        through_cut = self._cut_output() is not None and splits_into_scalars(losses)
        for layer in self._others:
            costs = _other_layer_costs(layer.module, layer.calls, num, through_cut=through_cut)
            total = PathCosts(total.rows + costs.rows, total.gram + costs.gram)
        return total

    def gram(self, losses: Tensor, *, retain_graph: bool = True) -> Tensor:
        """⟨∇L_i, ∇L_j⟩ on the parameters [K, K], for losses [K] computed inside the recording
        (stacked from K scalars, ``torch.stack([...])``, for the cut to split them).

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
        self._kept = _Kept([], [])
        self.used_cut = self.used_readers = False
        if not targets or not losses.requires_grad:
            return gram
        with torch.autocast(losses.device.type, enabled=False):
            through = self._cut_output() if splits_into_scalars(losses) else None
            if through is not None and through._version != self._cut_version:
                through = None  # the output was changed in place after the cut ran
            walk = None
            if through is not None:
                walk = _walk_to_readers(losses, through, self._param_ids)
                if walk.broken:  # a loss reaches a parameter without the cut: no cut
                    through = None
            self.used_cut = through is not None
            if through is not None:
                if walk is not None and walk.separable:
                    cotangents, self._kept.others = _grads_through_readers(losses, through, walk)
                    self.used_readers = True
                else:
                    cotangents = _each_loss_grad(losses, through)
                grads = _batched_vjp(through, cotangents, targets, retain_graph=retain_graph)
            else:
                selectors = torch.eye(num, dtype=losses.dtype, device=losses.device)
                grads = _batched_vjp(losses, selectors, targets, retain_graph=retain_graph)
            by_layer: dict[int, tuple[_Layer, list[Tensor], list[Tensor]]] = {}
            for (layer, call), grad in zip(calls, grads[: len(calls)], strict=True):
                if grad is None:
                    continue
                entry = by_layer.setdefault(id(layer), (layer, [], []))
                entry[1].append(_input_rows(layer.module, call.source.detach()))
                entry[2].append(_output_rows(layer.module, grad.to(dtype)))
            for layer, rows, outputs in by_layer.values():
                # Several calls of one layer add their gradients: their rows stack.
                stacked_rows = rows[0] if len(rows) == 1 else torch.cat(rows)
                stacked_grads = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)
                if isinstance(layer.module, nn.Embedding):
                    share = _embedding_share(layer.module, stacked_rows, stacked_grads)
                else:
                    stacked_rows = stacked_rows.to(dtype)
                    bias = getattr(layer.module, "bias", None) is not None
                    share = _linear_share(stacked_rows, stacked_grads, bias)
                gram = gram + share
                self._kept.layers.append((layer.module, stacked_rows, stacked_grads))
            for param, grad in zip(direct, grads[len(calls) :], strict=True):
                if grad is not None:
                    flat = grad.reshape(num, -1).to(dtype)
                    gram = gram + flat @ flat.T
                    self._kept.direct.append((param, grad))
        return gram

    def weighted_gradients(self, weights: Tensor) -> list[Tensor] | None:
        """Σ_k w_k ∇L_k on each of the parameters, in their order (zeros where no loss
        reaches one), from what the last :meth:`gram` computed — no further backward pass:
        a recorded layer's is its rows times the weighted output gradients, Σ_k w_k D_k, a
        directly differentiated parameter's the weighted sum of its K gradients. None if
        :meth:`gram` has not run since the recording began or :meth:`clear`."""
        kept = self._kept
        if kept is None:
            return None
        found: dict[int, Tensor] = {}
        for module, rows, grads in kept.layers:
            # Σ_k w_k D_k as one vector–matrix product over the flattened rows
            combined = (weights.to(grads) @ grads.flatten(1)).view(grads.shape[1:])
            weight = module.weight
            assert isinstance(weight, Tensor)
            if isinstance(module, nn.Embedding):
                tokens = rows
                if module.padding_idx is not None:  # its row gets no gradient
                    kept_rows = tokens != module.padding_idx
                    tokens, combined = tokens[kept_rows], combined[kept_rows]
                total = combined.new_zeros(weight.shape)
                found[id(weight)] = total.index_add_(0, tokens, combined)
                continue
            found[id(weight)] = (combined.T @ rows).reshape(weight.shape)
            bias = getattr(module, "bias", None)
            if isinstance(bias, Tensor):
                found[id(bias)] = combined.sum(dim=0)
        for param, grads in kept.direct:
            found[id(param)] = torch.tensordot(weights.to(grads), grads, dims=1)
        return [
            found[id(p)].to(p.dtype) if id(p) in found else torch.zeros_like(p) for p in self.params
        ]

    def own_gradients(
        self, tensors: Sequence[Tensor], coefficients: Tensor | None = None
    ) -> list[Tensor] | None:
        """Σ_k b_k ∇L_k on each of `tensors` (the objectives' own parameters: the heads; b =
        `coefficients`, default ones) from the one pass through the heads that the last
        :meth:`gram` took at the cut — no further backward pass. None where that pass did not
        happen, where one of `tensors` was not reached by it (a parameter under the cut's
        output, which the pass stops at), where the cut has a trainable parameter the recorder
        was not given, or where unequal coefficients meet a tensor that several losses reach
        (its gradient is known only as their sum). Fresh tensors (each may become a ``.grad``
        that is added into in place)."""
        return self._own_gradients(tensors, coefficients, take=False)

    def take_own_gradients(
        self, tensors: Sequence[Tensor], coefficients: Tensor | None = None
    ) -> list[Tensor] | None:
        """:meth:`own_gradients` for the step itself: a kept gradient whose factor is 1 is
        handed over without a copy where that is safe (contiguous, and sharing no memory with
        another one handed over), and the recorder forgets the pass — later calls of this,
        :meth:`own_gradients` and :meth:`own_tensors` return None."""
        return self._own_gradients(tensors, coefficients, take=True)

    def _own_gradients(
        self, tensors: Sequence[Tensor], coefficients: Tensor | None, *, take: bool
    ) -> list[Tensor] | None:
        kept = self._kept
        if kept is None or not kept.others or not self._cut_holds_every_parameter():
            return None
        factors: list[float] | None = None if coefficients is None else coefficients.tolist()
        found: list[Tensor] = []
        scaled: list[tuple[int, Tensor, float]] = []  # multiplied in one call below
        handed: set[int] = set()  # the memory of the gradients handed over as they are
        for tensor in tensors:
            entry = kept.others.get(id(tensor))
            if entry is None:
                return None
            _, grad, owners = entry
            if grad is None:
                found.append(torch.zeros_like(tensor))
                continue
            factor = 1.0
            if factors is not None:
                factor = factors[owners[0]]
                if any(factors[owner] != factor for owner in owners[1:]):
                    return None  # its losses weighted differently: only their sum is known
            if factor != 1.0:
                scaled.append((len(found), grad, factor))
                found.append(grad)  # replaced by its product below
                continue
            memory = grad.untyped_storage().data_ptr()
            # autograd may give two parameters one tensor (a head adding both) or an expanded
            # one (a sum's): those are copied, as its own backward pass would
            if take and grad.is_contiguous() and memory not in handed:
                handed.add(memory)
                found.append(grad)
            else:
                found.append(grad.clone(memory_format=torch.contiguous_format))
        if scaled:
            products = torch._foreach_mul([grad for _, grad, _ in scaled], [f for *_, f in scaled])
            for (index, _, _), product in zip(scaled, products, strict=True):
                found[index] = product
        if take:
            kept.others = {}
        return found

    def own_tensors(
        self, shared: Sequence[Tensor], params: Iterable[Tensor]
    ) -> list[Tensor] | None:
        """The tensors of `params` the losses reach other than the `shared` ones (the
        objectives' own: the heads), in `params`' order, as the last :meth:`gram`'s one pass
        through the heads found them — no walk of the whole graph. None where that cannot be
        vouched for: the pass did not happen, `shared` are not exactly the recorder's
        parameters, the cut has a trainable parameter the recorder is not given, or a
        trainable tensor of `params` is neither shared nor met by the pass (one before the cut,
        which the pass does not reach, or one no loss reaches)."""
        kept = self._kept
        if kept is None or not kept.others or not self._cut_holds_every_parameter():
            return None
        mine = self._param_ids
        if {id(t) for t in shared} != mine:
            return None
        listed = list(params)
        if any(p.requires_grad and id(p) not in mine and id(p) not in kept.others for p in listed):
            return None
        return [p for p in listed if id(p) in kept.others and id(p) not in mine]

    def _cut_holds_every_parameter(self) -> bool:
        """Whether every trainable parameter of the cut is one of the recorder's (the pass
        through the heads stops at the cut's output: one it was not given, also used outside
        the cut, would be counted through that use alone)."""
        if self.cut is None:
            return False
        return all(id(p) in self._param_ids for p in self._cut_params if p.requires_grad)

    def _cut_output(self) -> Tensor | None:
        """The cut module's output, if this step's recording shows the cut holds."""
        if self.cut is None or self._outside_cut or len(self._cut_outputs) != 1:
            return None
        output = self._cut_outputs[0]
        return output if isinstance(output, Tensor) and output.requires_grad else None

    def clear(self) -> None:
        """Forget the recorded calls (their tensors keep the forward's activations alive)."""
        for layer in [*self._layers, *self._others]:
            layer.calls.clear()
        self._reset_step()


@dataclass
class _ReadersWalk:
    """What a walk of the losses' graph down to the cut's output found
    (:func:`_walk_to_readers`)."""

    readers: list[tuple[Any, tuple[int, ...], int]]
    """Each operation reading the output, as its backward node, the positions of its inputs
    that are the output, and the loss that reaches it (the first one, if several do)."""
    leaves: dict[int, tuple[Tensor, list[int]]]
    """Every leaf the losses reach without the cut's output, by id: the leaf and the losses
    that reach it."""
    separable: bool
    """Whether each operation reading the output is reached by one loss."""
    broken: bool
    """Whether a loss reaches one of the recorder's parameters without the cut's output (a
    head reading a trunk weight), or another output of the operation that computed it: the
    cut does not hold."""


def _no_cut() -> _ReadersWalk:
    """A walk that found the cut does not hold."""
    return _ReadersWalk([], {}, separable=False, broken=True)


def _walk_to_readers(losses: Tensor, output: Tensor, mine: set[int]) -> _ReadersWalk:
    """Walk each of the losses stacked from K scalars down to the cut's `output` (not below
    it), noting the operations reading it and the leaves each loss reaches; `mine` are the ids
    of the recorder's parameters."""
    node = losses.grad_fn
    stop = output.grad_fn
    if node is None or stop is None:
        return _no_cut()
    number = output.output_nr
    readers: list[tuple[Any, tuple[int, ...], int]] = []
    reader_of: dict[int, int] = {}  # a reader node's id: the loss that reached it first
    leaves: dict[int, tuple[Tensor, list[int]]] = {}
    separable = True
    # The nodes stay referenced while their ids are compared (an id is unique only then).
    seen: dict[int, Any] = {}
    for position, (start, slot) in enumerate(node.next_functions):
        seen.clear()
        if start is stop:  # the loss is the output itself: no operation reads it for it
            if slot != number:
                return _no_cut()
            separable = False
            continue
        pending = [start] if start is not None else []
        while pending:
            current = pending.pop()
            if id(current) in seen:
                continue
            seen[id(current)] = current
            into: list[int] = []
            for index, (child, child_slot) in enumerate(current.next_functions):
                if child is stop:
                    if child_slot != number:
                        return _no_cut()
                    into.append(index)
                elif child is not None:
                    pending.append(child)
            if into:
                first = reader_of.setdefault(id(current), position)
                if first == position:
                    readers.append((current, tuple(into), position))
                else:
                    separable = False
            leaf = getattr(current, "variable", None)  # an AccumulateGrad node's tensor
            if isinstance(leaf, Tensor):
                if id(leaf) in mine:
                    return _no_cut()
                leaves.setdefault(id(leaf), (leaf, []))[1].append(position)
    return _ReadersWalk(readers, leaves, separable and bool(readers), broken=False)


def _grads_through_readers(
    losses: Tensor, output: Tensor, walk: _ReadersWalk
) -> tuple[Tensor, dict[int, tuple[Tensor, Tensor | None, list[int]]]]:
    """Each loss's gradient with respect to `output` [K, *output], and the losses' sum's on
    every other leaf they reach (the heads' parameters; as ``_Kept.others`` keeps them), from one
    backward pass of their sum to `output` and those leaves (`walk` must be separable): a hook
    on each operation reading `output` keeps the gradient it hands the output, which is that of
    the one loss that reaches it; a loss's gradient is the sum of what its readers hand."""
    parts: list[Tensor | None] = [None] * len(losses)

    def keeper(loss: int, positions: tuple[int, ...]) -> Any:
        def keep(grad_inputs: tuple[Tensor | None, ...], grad_outputs: object) -> None:
            for position in positions:
                grad = grad_inputs[position]
                if grad is not None:  # kept as it is: the output's buffer adds a copy
                    found = parts[loss]
                    parts[loss] = grad if found is None else found + grad

        return keep

    others = [leaf for leaf, _ in walk.leaves.values()]
    handles = []
    try:
        for node, into, loss in walk.readers:
            handles.append(node.register_hook(keeper(loss, into)))
        grads = torch.autograd.grad(
            losses,
            [output, *others],
            torch.ones_like(losses),
            retain_graph=True,
            allow_unused=True,
        )
    finally:
        for handle in handles:
            handle.remove()
    rows = [torch.zeros_like(output) if part is None else part for part in parts]
    by_leaf: dict[int, tuple[Tensor, Tensor | None, list[int]]] = {
        key: (leaf, grad, owners)
        for (key, (leaf, owners)), grad in zip(walk.leaves.items(), grads[1:], strict=True)
    }
    return torch.stack(rows), by_leaf


def _each_loss_grad(losses: Tensor, output: Tensor) -> Tensor:
    """[K, *output]: each loss's gradient with respect to `output`, zeros where it does not
    reach it: each of K stacked scalars differentiated alone (its pass runs only what that
    loss computed from `output`: its own head), otherwise one vectorised pass."""
    rows = per_objective_grads(losses, [output], strategy="split")
    return rows.view(len(losses), *output.shape)


def _batched_vjp(
    output: Tensor, cotangents: Tensor, targets: list[Tensor], *, retain_graph: bool
) -> tuple[Tensor | None, ...]:
    """The K vector–Jacobian products of `output` with cotangents [K, *output] for each target,
    [K, *target] or None where `output` does not reach it: one vectorised backward pass, or K
    passes if batching fails (the losses' gradient rows: `output` the losses, the cotangents
    the identity)."""
    num = cotangents.shape[0]
    try:
        return torch.autograd.grad(
            output,
            targets,
            grad_outputs=cotangents,
            is_grads_batched=True,
            retain_graph=True,  # a failure halfway must leave the graph for the loop
            allow_unused=True,
        )
    except RuntimeError:
        rows = [
            torch.autograd.grad(
                output,
                targets,
                grad_outputs=cotangents[k],
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
