"""The layer-wise Gram matrix of per-objective gradients against the [K, P] Jacobian's."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from twcore.autodiff import per_objective_grads
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
    if always_kernel:
        assert recorder.kernel_layers == [
            m for m in recorder.recorded_layers if any(c for c in _calls_of(recorder, m))
        ]
    return recorder


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
