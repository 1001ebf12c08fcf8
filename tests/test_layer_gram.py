"""The layer-wise Gram matrix of per-objective gradients against the [K, P] Jacobian's."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from twcore.autodiff import own_leaves, per_objective_grads
from twcore.autodiff.layer_gram import GramRecorder


def _reference(losses: Tensor, params: list[Tensor]) -> Tensor:
    rows = per_objective_grads(losses, params, strategy="loop")
    return rows @ rows.T


class Heads(nn.Module):
    """K losses from one trunk: a linear head per objective, the last one shared by two."""

    def __init__(self, width: int, num: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(width, 3) for _ in range(num - 1))

    def forward(self, features: Tensor, targets: Tensor) -> Tensor:
        outputs = [head(features) for head in self.heads]
        losses = [((out - targets) ** 2).mean() for out in outputs]
        losses.append(((outputs[-1] + 1) ** 2).mean())  # reuses the last head
        return torch.stack(losses)


def _check(
    trunk: nn.Module,
    inputs: Tensor,
    width: int,
    num: int = 4,
    *,
    with_heads: bool = False,
    always_kernel: bool = True,
) -> GramRecorder:
    """The recorder's Gram matrix equals the rows'; by default every recorded layer takes
    its share from the kernel of its rows (the path under test), whatever it would cost."""
    torch.manual_seed(0)
    heads = Heads(width, num).double()
    targets = torch.randn(*inputs.shape[:1], 3, dtype=torch.float64)
    params = list(trunk.parameters()) + (list(heads.parameters()) if with_heads else [])
    recorder = GramRecorder(params, [trunk, heads], always_kernel=always_kernel)
    with recorder:
        features = trunk(inputs)
        losses = heads(features.reshape(len(inputs), -1), targets)
    gram = recorder.gram(losses)
    torch.testing.assert_close(gram, _reference(losses, params), rtol=1e-10, atol=1e-12)
    _check_weighted_gradients(recorder, losses, params)
    if always_kernel:
        assert recorder.kernel_layers == [
            m for m in recorder.recorded_layers if any(c for c in _calls_of(recorder, m))
        ]
    return recorder


def _check_weighted_gradients(recorder: GramRecorder, losses: Tensor, params: list[Tensor]) -> None:
    """What the recorder kept gives Σ_k w_k ∇L_k on every parameter, as autograd does."""
    weights = torch.linspace(-0.5, 1.5, len(losses), dtype=losses.dtype)
    combined = recorder.weighted_gradients(weights)
    assert combined is not None
    expected = torch.autograd.grad(weights @ losses, params, retain_graph=True, allow_unused=True)
    for got, want, param in zip(combined, expected, params, strict=True):
        want = torch.zeros_like(param) if want is None else want
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def _calls_of(recorder: GramRecorder, module: nn.Module) -> list:
    return next(layer.calls for layer in recorder._layers if layer.module is module)


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_an_mlp_trunk_with_and_without_its_heads(batch: int) -> None:
    torch.manual_seed(1)
    trunk = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 8), nn.ReLU()).double()
    x = torch.randn(batch, 5, dtype=torch.float64)
    recorder = _check(trunk, x, 8)
    assert len(recorder.recorded_layers) == 2 and recorder.fallback == []
    _check(trunk, x, 8, with_heads=True)  # the heads are linear layers too, one shared


def test_a_cnn_with_batch_norm_takes_the_fallback_for_the_norm_only() -> None:
    torch.manual_seed(2)
    trunk = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 3, 3, stride=2, dilation=1, bias=False),
        nn.Flatten(),
    ).double()
    x = torch.randn(5, 2, 9, 9, dtype=torch.float64)
    width = trunk(x).shape[1]
    recorder = _check(trunk, x, width, num=5)
    norm = trunk[1]
    assert {id(p) for p in recorder.fallback} == {id(norm.weight), id(norm.bias)}
    _check(trunk, x[:1], width, num=3)  # batch of one


def test_dilated_strided_and_one_dimensional_convolutions() -> None:
    torch.manual_seed(3)
    trunk = nn.Sequential(
        nn.Conv1d(3, 5, 3, padding=2, dilation=2, stride=2), nn.Tanh(), nn.Flatten()
    ).double()
    x = torch.randn(4, 3, 11, dtype=torch.float64)
    _check(trunk, x, trunk(x).shape[1])
    trunk2 = nn.Sequential(nn.Conv2d(2, 3, (2, 3), padding=(1, 0), stride=(2, 1)), nn.Flatten())
    x2 = torch.randn(3, 2, 6, 7, dtype=torch.float64)
    _check(trunk2.double(), x2, trunk2(x2).shape[1])


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_same_padding_is_recorded_where_it_pads_evenly_and_takes_the_fallback_elsewhere() -> None:
    torch.manual_seed(7)
    odd = nn.Conv2d(2, 3, 5, padding="same", dilation=2)
    even = nn.Conv2d(3, 2, 2, padding="same")
    trunk = nn.Sequential(odd, nn.ReLU(), nn.MaxPool2d(2), even, nn.Flatten()).double()
    x = torch.randn(4, 2, 8, 8, dtype=torch.float64)
    recorder = _check(trunk, x, trunk(x).shape[1])
    assert recorder.recorded_layers == [odd]
    assert {id(p) for p in recorder.fallback} == {id(even.weight), id(even.bias)}


class Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 6, padding_idx=0)
        self.norm = nn.LayerNorm(6)
        self.mix = nn.Linear(6, 6)

    def forward(self, tokens: Tensor) -> Tensor:
        # the linear layer is called twice: its two uses add up
        hidden = self.mix(self.norm(self.embed(tokens)))
        return self.mix(torch.tanh(hidden)).mean(dim=1)


def test_an_embedding_with_repeated_and_padding_tokens_a_norm_and_a_layer_used_twice() -> None:
    torch.manual_seed(4)
    trunk = Tokens().double()
    tokens = torch.tensor([[1, 2, 2, 0], [3, 1, 0, 0], [5, 5, 5, 5]])
    recorder = _check(trunk, tokens, 6, num=4)
    assert {type(m).__name__ for m in recorder.recorded_layers} >= {"Embedding", "Linear"}


def test_a_wide_layer_on_few_rows_and_a_narrow_layer_on_many_rows_agree() -> None:
    """Both ways of computing a linear layer's share: from its rows' kernel XXᵀ (few rows),
    or from its K gradients in the same backward pass (many rows)."""
    torch.manual_seed(5)
    for batch, width, kernel in ((3, 50, True), (80, 2, False)):
        trunk = nn.Sequential(nn.Linear(width, 4), nn.Sigmoid()).double()
        x = torch.randn(batch, width, dtype=torch.float64)
        recorder = _check(trunk, x, 4, always_kernel=False)
        assert recorder.kernel_layers == ([trunk[0]] if kernel else [])


def test_convolutions_on_few_positions_take_the_kernel_and_on_many_the_gradients() -> None:
    torch.manual_seed(11)
    few = nn.Conv2d(8, 16, 3, padding=1)  # 2×2 positions: 4 rows an image
    trunk = nn.Sequential(few, nn.Tanh(), nn.Flatten()).double()
    x = torch.randn(3, 8, 2, 2, dtype=torch.float64)
    assert _check(trunk, x, trunk(x).shape[1], num=5, always_kernel=False).kernel_layers == [few]
    many = nn.Conv1d(2, 3, 3, padding=1)
    trunk = nn.Sequential(many, nn.Tanh(), nn.Flatten()).double()
    x = torch.randn(6, 2, 40, dtype=torch.float64)
    assert _check(trunk, x, trunk(x).shape[1], num=2, always_kernel=False).kernel_layers == []


def test_custom_parameters_and_tied_weights_take_the_fallback() -> None:
    torch.manual_seed(6)

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(4, 4)
            self.scale = nn.Parameter(torch.ones(4))

        def forward(self, x: Tensor) -> Tensor:
            # the layer's weight is also used directly: only the fallback is right for it
            return self.layer(x) * self.scale + x @ self.layer.weight

    trunk = Scaled().double()
    x = torch.randn(6, 4, dtype=torch.float64)
    targets = torch.randn(6, 3, dtype=torch.float64)
    heads = Heads(4, 3).double()
    params = list(trunk.parameters())
    recorder = GramRecorder(params, [trunk, heads], fallback=[trunk.layer.weight])
    with recorder:
        losses = heads(trunk(x), targets)
    torch.testing.assert_close(recorder.gram(losses), _reference(losses, params))


def test_a_layer_with_a_frozen_weight_or_a_rescaled_embedding_takes_the_fallback() -> None:
    torch.manual_seed(8)
    frozen = nn.Linear(4, 4).double()
    frozen.weight.requires_grad_(False)
    trunk = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), frozen, nn.Tanh()).double()
    params = [p for p in trunk.parameters() if p.requires_grad]
    recorder = GramRecorder(params, trunk)
    assert recorder.recorded_layers == [trunk[0]] and recorder.fallback == [frozen.bias]
    heads = Heads(4, 3).double()
    targets = torch.randn(5, 3, dtype=torch.float64)
    with recorder:
        losses = heads(trunk(torch.randn(5, 3, dtype=torch.float64)), targets)
    torch.testing.assert_close(recorder.gram(losses), _reference(losses, params))
    embedding = nn.Embedding(5, 3, scale_grad_by_freq=True)
    assert GramRecorder(list(embedding.parameters()), embedding).recorded_layers == []


def test_an_in_place_change_of_a_recorded_input_is_an_error() -> None:
    layer = nn.Linear(30, 30).double()  # wide on few rows: its share comes from the kernel
    x = torch.randn(4, 30, dtype=torch.float64)
    recorder = GramRecorder(list(layer.parameters()), layer)
    with recorder:
        hidden = torch.tanh(x)
        out = layer(hidden)
        hidden.add_(1.0)  # after the layer used it
        losses = torch.stack([out.sum(), out.square().sum()])
    with pytest.raises(RuntimeError, match="changed in place"):
        recorder.gram(losses)


def test_the_recorder_leaves_no_hooks_and_records_nothing_without_grad() -> None:
    layer = nn.Linear(3, 2)
    recorder = GramRecorder(list(layer.parameters()), layer)
    with recorder, torch.no_grad():
        layer(torch.randn(2, 3))
    assert layer._forward_hooks == {} and recorder._layers[0].calls == []


def test_an_in_place_change_of_a_recorded_output_is_an_error() -> None:
    layer = nn.Linear(30, 30).double()
    recorder = GramRecorder(list(layer.parameters()), layer)
    with recorder:
        out = nn.functional.relu(layer(torch.randn(4, 30, dtype=torch.float64)), inplace=True)
        losses = torch.stack([out.sum(), out.square().sum()])
    with pytest.raises(RuntimeError, match="changed in place"):
        recorder.gram(losses)


def test_tied_weights_subclasses_and_reparametrised_layers_take_the_fallback() -> None:
    torch.manual_seed(9)

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(7, 4)
            self.out = nn.Linear(4, 7, bias=False)
            self.out.weight = self.embed.weight  # one parameter, two layers

        def forward(self, tokens: Tensor) -> Tensor:
            return self.out(torch.tanh(self.embed(tokens))).mean(dim=1)

    tied = Tied().double()
    recorder = _check(tied, torch.tensor([[1, 2, 3], [3, 4, 4]]), 7)
    assert recorder.recorded_layers == [] and recorder.fallback == [tied.embed.weight]

    attention_projection = nn.MultiheadAttention(4, 1).out_proj  # a Linear subclass
    normalised = nn.utils.parametrizations.weight_norm(nn.Linear(4, 4))
    for layer in (attention_projection, normalised):
        assert GramRecorder(list(layer.parameters()), layer).recorded_layers == []


def test_a_layer_recomputed_under_checkpointing_is_differentiated_directly() -> None:
    torch.manual_seed(10)
    inner = nn.Sequential(nn.Linear(5, 6), nn.Tanh()).double()

    class Checkpointed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Tensor) -> Tensor:
            return torch.utils.checkpoint.checkpoint(self.inner, x, use_reentrant=True)

    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    recorder = _check(Checkpointed(), x, 6)  # the forward ran without grad: no call recorded
    assert recorder.recorded_layers == [inner[0]]


def test_a_functional_call_with_other_tensors_is_not_recorded_as_the_layers_use() -> None:
    layer = nn.Linear(3, 2).double()
    recorder = GramRecorder(list(layer.parameters()), layer)
    other = {name: p.detach().clone().requires_grad_() for name, p in layer.named_parameters()}
    with recorder:
        torch.func.functional_call(layer, other, (torch.randn(4, 3, dtype=torch.float64),))
    assert recorder._layers[0].calls == []


def _counted_flops(step) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


@pytest.mark.parametrize("cut", [False, True])
@pytest.mark.parametrize(
    ("kind", "num"), [("mlp", 2), ("mlp", 20), ("conv", 2), ("conv", 20), ("narrow", 2)]
)
def test_the_path_estimated_cheaper_is_the_one_with_fewer_counted_flops(
    kind: str, num: int, cut: bool
) -> None:
    """``path_costs`` against torch's own count of the matrix products of each whole step: the
    Gram matrix and the weighted gradient from what it left (the heads' by a backward pass), or
    the K gradient rows (heads included), their Gram matrix and the combination."""
    from twcore.contract.weighting import gram_weighted_backward

    torch.manual_seed(12)
    head_sizes = [3] * num
    if kind == "mlp":  # few rows, wide layers: the kernel path
        trunk: nn.Module = nn.Sequential(nn.Linear(200, 64), nn.ReLU(), nn.Linear(64, 32))
        inputs, width = torch.randn(16, 200), 32
    elif kind == "narrow":  # a layer whose K gradients are about its kernel's cost
        trunk = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
        inputs, width, head_sizes = torch.randn(12, 16), 32, [2, 1]
    else:  # many positions: the layers' own gradients
        trunk = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.Flatten()
        )
        inputs, width = torch.randn(8, 3, 16, 16), 8 * 16 * 16
    heads = nn.ModuleList(nn.Linear(width, size) for size in head_sizes)
    shared, own = list(trunk.parameters()), list(heads.parameters())

    def losses() -> Tensor:
        features = trunk(inputs)
        return torch.stack([head(features).pow(2).mean() for head in heads])

    recorder = GramRecorder(shared, [trunk, heads], cut=trunk if cut else None)
    with recorder:
        recorded = losses()
    costs = recorder.path_costs(recorded)

    def gram_step() -> None:
        recorder.gram(recorded)
        gram_weighted_backward(recorded, torch.ones(num), shared, own, recorder)

    gram_flops = _counted_flops(gram_step)
    fresh = losses()

    def rows_step() -> None:
        rows = per_objective_grads(fresh, shared + own)
        size = sum(p.numel() for p in shared)
        _ = rows[:, :size] @ rows[:, :size].T, torch.ones(num) @ rows

    rows_flops = _counted_flops(rows_step)
    assert recorder.used_cut == cut
    assert costs.cheaper == ("gram" if gram_flops <= rows_flops else "rows")
    assert costs.cheaper == {"mlp": "gram", "conv": "gram", "narrow": "rows"}[kind]


class _TrunkAndHeads(nn.Module):
    """A trunk and K linear heads reading its output, float64."""

    def __init__(self, num: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.LayerNorm(12), nn.Linear(12, 5))
        self.heads = nn.ModuleList(nn.Linear(5, 2) for _ in range(num))
        self.double()

    def losses(self, inputs: Tensor, *, stacked: bool = True) -> Tensor:
        features = self.trunk(inputs)
        if not stacked:  # one vectorised op for all K: no per-loss scalars to start from
            outputs = torch.einsum(
                "bf,kof->kbo", features, torch.stack([h.weight for h in self.heads])
            )
            return (outputs + 0.5).pow(2).mean(dim=(1, 2))
        # and two losses that do not reach the trunk: one of a head's weights, one constant
        unreached = [self.heads[0].weight.pow(2).sum(), torch.tensor(1.0, dtype=torch.float64)]
        return torch.stack(
            [*((head(features) + 0.5).pow(2).mean() for head in self.heads), *unreached]
        )


@pytest.mark.parametrize("stacked", [True, False])
def test_a_cut_at_the_trunk_gives_the_same_gram_as_the_losses_pass(stacked: bool) -> None:
    """Through the trunk's output (each loss alone to it, then K cotangents through the trunk)
    the Gram matrix and the weighted gradient are the rows' to 1e-10, on kernel, direct and
    fallback (LayerNorm) paths; losses that are not K stacked scalars take the one pass."""
    torch.manual_seed(13)
    model = _TrunkAndHeads(5)
    inputs = torch.randn(9, 6, dtype=torch.float64)
    shared = list(model.trunk.parameters())
    for always_kernel in (True, False):
        recorder = GramRecorder(shared, model, cut=model.trunk, always_kernel=always_kernel)
        assert recorder.cut is model.trunk
        with recorder:
            losses = model.losses(inputs, stacked=stacked)
        gram = recorder.gram(losses)
        assert recorder.used_cut == stacked  # losses from one vectorised op do not split
        torch.testing.assert_close(gram, _reference(losses, shared), rtol=1e-10, atol=1e-12)
        _check_weighted_gradients(recorder, losses, shared)


def test_a_cut_that_does_not_hold_is_not_used() -> None:
    """A parameter owned outside the cut, a recorded layer run outside it, or the cut run twice:
    the one pass from the losses, and the same Gram matrix."""
    torch.manual_seed(14)
    model = _TrunkAndHeads(3)
    inputs = torch.randn(7, 6, dtype=torch.float64)
    shared = list(model.trunk.parameters())
    with_head = [*shared, *model.heads[0].parameters()]
    assert GramRecorder(with_head, model, cut=model.trunk).cut is None
    # a parameter whose owner the recorder is not shown is not the cut's either
    assert GramRecorder(with_head, model.trunk, cut=model.trunk).cut is None

    recorder = GramRecorder(shared, model, cut=model.trunk)
    with recorder:  # the trunk's first layer also used outside the trunk
        features = model.trunk(inputs)
        extra = model.trunk[0](inputs).sum(dim=1, keepdim=True)
        losses = torch.stack([(head(features) * extra).pow(2).mean() for head in model.heads])
    gram = recorder.gram(losses)
    assert not recorder.used_cut
    torch.testing.assert_close(gram, _reference(losses, shared), rtol=1e-10, atol=1e-12)

    recorder = GramRecorder(shared, model, cut=model.trunk)
    with recorder:  # the trunk run twice
        twice = model.trunk(inputs) + model.trunk(inputs.flip(0))
        losses = torch.stack([head(twice).pow(2).mean() for head in model.heads])
    gram = recorder.gram(losses)
    assert not recorder.used_cut
    torch.testing.assert_close(gram, _reference(losses, shared), rtol=1e-10, atol=1e-12)


def test_weighted_gradients_need_a_gram_of_this_recording() -> None:
    torch.manual_seed(15)
    model = _TrunkAndHeads(2)
    recorder = GramRecorder(list(model.trunk.parameters()), model, cut=model.trunk)
    with recorder:
        losses = model.losses(torch.randn(4, 6, dtype=torch.float64))
    assert recorder.weighted_gradients(torch.ones(len(losses))) is None
    recorder.gram(losses)
    assert recorder.weighted_gradients(torch.ones(len(losses))) is not None
    recorder.clear()  # lets go of the kept gradients with the activations
    assert recorder.weighted_gradients(torch.ones(len(losses))) is None


class _PairedHeads(nn.Module):
    """A trunk and heads reading its output: one head per loss, two heads per loss, a head
    called again for another loss, a head's output read by two losses, and a loss that also
    reads the trunk's output itself."""

    def __init__(self, arrangement: str, num: int = 3) -> None:
        super().__init__()
        self.arrangement = arrangement
        self.trunk = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 5))
        count = 2 * num if arrangement == "two heads per loss" else num
        self.heads = nn.ModuleList(nn.Linear(5, 2) for _ in range(count))
        self.num = num
        self.double()

    def losses(self, inputs: Tensor) -> Tensor:
        features = self.trunk(inputs)
        if self.arrangement == "two heads per loss":
            pairs = [(self.heads[2 * k], self.heads[2 * k + 1]) for k in range(self.num)]
            losses = [(a(features) * b(features)).mean() for a, b in pairs]
        else:
            outputs = [head(features) for head in self.heads]
            losses = [(output - 0.5).pow(2).mean() for output in outputs]
        if self.arrangement == "a head called again":
            losses.append(self.heads[0](features).pow(4).mean())
        if self.arrangement == "a head's output read by two losses":
            losses.append(outputs[0].pow(4).mean())
        if self.arrangement == "a loss reading the output":  # at both inputs of one product
            losses[1] = losses[1] + (features * features).mean()
        # a loss of a head's weight alone: that weight is reached by two losses
        losses.append(self.heads[-1].weight.pow(2).sum())
        return torch.stack(losses)


@pytest.mark.parametrize(
    ("arrangement", "readers"),
    [
        ("one head per loss", True),
        ("two heads per loss", True),
        ("a head called again", True),
        ("a head's output read by two losses", False),
        ("a loss reading the output", True),
    ],
)
def test_one_pass_through_the_heads_tells_the_losses_apart_or_steps_aside(
    arrangement: str, readers: bool
) -> None:
    """Each operation reading the trunk's output hands it its gradient in one backward pass,
    so that pass gives each loss's gradient there where every such operation belongs to one
    loss (a head called twice is two; a loss may also read the output itself); where one does
    not (a head's output two losses read), a pass per loss. The Gram matrix, the weighted
    gradient on the trunk and the heads' Σ_k b_k ∇L_k are autograd's to 1e-10."""
    torch.manual_seed(16)
    model = _PairedHeads(arrangement)
    inputs = torch.randn(8, 6, dtype=torch.float64)
    shared = list(model.trunk.parameters())
    recorder = GramRecorder(shared, model, cut=model.trunk)
    with recorder:
        losses = model.losses(inputs)
    gram = recorder.gram(losses)
    assert recorder.used_cut and recorder.used_readers == readers
    torch.testing.assert_close(gram, _reference(losses, shared), rtol=1e-10, atol=1e-12)
    _check_weighted_gradients(recorder, losses, shared)

    params = list(model.parameters())
    heads = list(model.heads.parameters())
    if not readers:
        assert recorder.own_tensors(shared, params) is None
        assert recorder.own_gradients(heads) is None
        return
    assert recorder.own_tensors(shared, params) == own_leaves(losses, shared, params) == heads
    coefficients = torch.linspace(0.5, 2.0, len(losses), dtype=torch.float64)
    expected = torch.autograd.grad(losses.sum(), heads, retain_graph=True)
    for got, want in zip(recorder.own_gradients(heads), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    # The last head's weight is reached by two losses: only their sum is known, so weighted
    # coefficients get None (the step then takes a backward pass through the heads).
    assert recorder.own_gradients(heads, coefficients) is None
    others = heads[2:-2]  # neither the first head (called again) nor the last
    expected = torch.autograd.grad(coefficients @ losses, others, retain_graph=True)
    for got, want in zip(recorder.own_gradients(others, coefficients), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    # own_gradients gives fresh tensors at each call; take_own_gradients the kept ones, once.
    first, second = recorder.own_gradients(others), recorder.own_gradients(others)
    assert all(a is not b for a, b in zip(first, second, strict=True))
    taken = recorder.take_own_gradients(others)
    expected = torch.autograd.grad(losses.sum(), others, retain_graph=True)
    for got, want in zip(taken, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    taken[0].add_(1.0)  # it may become a .grad added into in place
    assert recorder.own_gradients(others) is None
    assert recorder.take_own_gradients(others) is None
    assert recorder.own_tensors(shared, params) is None


class _SharedGradientHeads(nn.Module):
    """A trunk and two heads whose parameters get aliased gradients from autograd: a head
    adding two offsets of its output's shape (one gradient tensor for both), and a head with
    an offset its loss only sums (an expanded gradient, stride 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 3), nn.Tanh()).double()
        self.adding = _Adding()
        self.summing = _Summing()

    def losses(self, inputs: Tensor) -> Tensor:
        features = self.trunk(inputs)
        first = self.adding(features).square().mean()
        second = self.summing(features).square().mean() + self.summing.offset.sum()
        return torch.stack([first, second])


class _Adding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(3, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(3, dtype=torch.float64))

    def forward(self, features: Tensor) -> Tensor:
        return features.mean(0) + self.a + self.b  # [3]: a's and b's gradient are one tensor


class _Summing(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2).double()
        self.offset = nn.Parameter(torch.randn(4, dtype=torch.float64))

    def forward(self, features: Tensor) -> Tensor:
        return self.linear(features)


def test_handed_over_head_gradients_never_share_memory_or_overlap() -> None:
    """Autograd gives the two offsets one gradient tensor and a summed bias an expanded one:
    handed over as they are, two parameters would share one ``.grad`` (clipped twice in
    place) or own one with overlapping memory. Those are copied; the gradients are
    autograd's."""
    torch.manual_seed(21)
    model = _SharedGradientHeads()
    inputs = torch.randn(5, 4, dtype=torch.float64)
    shared = list(model.trunk.parameters())
    recorder = GramRecorder(shared, model, cut=model.trunk)
    with recorder:
        losses = model.losses(inputs)
    recorder.gram(losses)
    assert recorder.used_readers
    heads = [model.adding.a, model.adding.b, *model.summing.parameters()]
    kept = recorder._kept.others  # what autograd gave the pass through the heads
    a, b, offset = (kept[id(t)][1] for t in (model.adding.a, model.adding.b, model.summing.offset))
    assert a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    assert not offset.is_contiguous()
    expected = torch.autograd.grad(losses.sum(), heads, retain_graph=True)
    taken = recorder.take_own_gradients(heads)
    assert taken is not None
    for got, want in zip(taken, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
        assert got.is_contiguous()
    memory = [grad.untyped_storage().data_ptr() for grad in taken]
    assert len(set(memory)) == len(memory)


def test_the_heads_tensors_are_given_only_where_the_pass_through_them_vouches_for_them() -> None:
    """None before a Gram matrix of this recording, when the trunk has a trainable parameter
    the recorder was not given, when the shared tensors are not the recorder's, and when a
    trainable parameter lies before the trunk (the pass through the heads does not reach it)."""
    torch.manual_seed(17)
    model = _PairedHeads("one head per loss")
    stem = nn.Linear(6, 6).double()
    shared = list(model.trunk.parameters())
    params = [*model.parameters(), *stem.parameters()]
    partial = GramRecorder(shared[:-1], model, cut=model.trunk)  # the last bias left out
    whole = GramRecorder(shared, model, cut=model.trunk)
    for recorder, known in ((whole, True), (partial, False)):
        with recorder:
            losses = model.losses(torch.randn(5, 6, dtype=torch.float64))
        assert recorder.own_tensors(recorder.params, list(model.parameters())) is None
        recorder.gram(losses)
        found = recorder.own_tensors(recorder.params, list(model.parameters()))
        assert (found is not None) == known
    assert whole.own_tensors(shared[:-1], list(model.parameters())) is None
    assert whole.own_tensors([*shared, *model.heads[0].parameters()], params) is None
    with whole:
        losses = model.losses(stem(torch.randn(5, 6, dtype=torch.float64)))
    whole.gram(losses)
    assert whole.own_tensors(shared, params) is None  # the stem: before the cut
    assert whole.own_tensors(shared, list(model.parameters())) is not None


@pytest.mark.parametrize("heads_seen", [True, False])
def test_a_loss_reaching_a_trunk_parameter_past_its_output_takes_no_cut(heads_seen: bool) -> None:
    """A loss reading a trunk weight: the walk down to the trunk's output meets the recorder's
    own parameter, so the cut does not hold and the one pass from the losses runs — whether
    the recorder is shown the heads or not."""
    torch.manual_seed(18)
    model = _PairedHeads("one head per loss")
    shared = list(model.trunk.parameters())
    shown = model if heads_seen else model.trunk
    recorder = GramRecorder(shared, shown, fallback=shared, cut=model.trunk)
    with recorder:
        losses = model.losses(torch.randn(6, 6, dtype=torch.float64))
        tied = model.trunk[2].bias.sum() * losses[0]  # a loss reading a trunk parameter
        losses = torch.stack([tied, *losses[1:]])
    gram = recorder.gram(losses)
    assert not recorder.used_cut
    torch.testing.assert_close(gram, _reference(losses, shared), rtol=1e-10, atol=1e-12)


class _SplitTrunk(nn.Module):
    """A trunk whose output is one of two outputs of one operation (an unbind), keeping the
    other aside: a loss reading that one reaches the trunk's parameters past its output."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 10).double()
        self.aside: Tensor | None = None

    def forward(self, inputs: Tensor) -> Tensor:
        kept, self.aside = self.linear(inputs).view(-1, 2, 5).unbind(1)
        return kept


def test_a_loss_reading_another_output_of_the_trunks_last_operation_takes_no_cut() -> None:
    torch.manual_seed(22)
    trunk = _SplitTrunk()
    heads = nn.ModuleList(nn.Linear(5, 2) for _ in range(2)).double()
    shared = list(trunk.parameters())
    recorder = GramRecorder(shared, [trunk, heads], cut=trunk)
    with recorder:
        features = trunk(torch.randn(7, 6, dtype=torch.float64))
        assert trunk.aside is not None
        losses = torch.stack(
            [heads[0](features).pow(2).mean(), heads[1](trunk.aside).pow(2).mean()]
        )
    gram = recorder.gram(losses)
    assert not recorder.used_cut
    torch.testing.assert_close(gram, _reference(losses, shared), rtol=1e-10, atol=1e-12)


class _ScalarTrunk(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 4).double()

    def forward(self, inputs: Tensor) -> Tensor:
        return self.linear(inputs).pow(2).mean()


def test_a_loss_that_is_the_cuts_output_itself_is_differentiated_alone() -> None:
    """No operation reads the output for that loss, so the one pass through the readers cannot
    tell it apart: each loss is differentiated alone to the output, through the cut still."""
    torch.manual_seed(23)
    trunk = _ScalarTrunk()
    head = nn.Linear(1, 1).double()
    shared = list(trunk.parameters())
    recorder = GramRecorder(shared, [trunk, head], cut=trunk)
    with recorder:
        output = trunk(torch.randn(5, 6, dtype=torch.float64))
        losses = torch.stack([output, head(output.view(1, 1)).pow(2).sum()])
    gram = recorder.gram(losses)
    assert recorder.used_cut and not recorder.used_readers
    torch.testing.assert_close(gram, _reference(losses, shared), rtol=1e-10, atol=1e-12)


def test_an_output_changed_in_place_takes_no_cut_and_a_tuple_output_no_pass_through_heads() -> None:
    torch.manual_seed(19)
    model = _PairedHeads("one head per loss")
    shared = list(model.trunk.parameters())
    recorder = GramRecorder(shared, model, cut=model.trunk)
    inputs = torch.randn(6, 6, dtype=torch.float64)
    with recorder:
        features = model.trunk(inputs)
        features.mul_(2.0)  # the output the cut recorded, changed in place
        outputs = [head(features) for head in model.heads]
        losses = torch.stack([(output - 0.5).pow(2).mean() for output in outputs])
    gram = recorder.gram(losses)
    assert not recorder.used_cut  # the one pass from the losses
    torch.testing.assert_close(gram, _reference(losses, shared), rtol=1e-10, atol=1e-12)

    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(6, 5).double()

        def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
            out = self.layer(x)
            return out, out.tanh()

    pair = Pair()
    reader = nn.Bilinear(5, 5, 1).double()
    both = nn.ModuleDict({"pair": pair, "reader": reader})
    recorder = GramRecorder(list(pair.parameters()), both, cut=pair)
    with recorder:
        first, second = pair(inputs)
        losses = torch.stack([reader(first, second).mean(), first.pow(2).mean()])
    torch.testing.assert_close(
        recorder.gram(losses), _reference(losses, list(pair.parameters())), rtol=1e-10, atol=0
    )
