"""The Gram-path benchmark's hand-written step is the library's step: what its phases time is
what the library computes."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn
from twcore_method_gradcos.rule import GradCos

from twcore.autodiff import GramRecorder


def _benchmark() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gram_weighting.py"
    spec = importlib.util.spec_from_file_location("benchmark_gram_weighting", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class _Kept(GramRecorder):
    """A recorder that keeps the last Gram matrix it computed."""

    def gram(self, losses: torch.Tensor, *, retain_graph: bool = True) -> torch.Tensor:
        self.computed = super().gram(losses, retain_graph=retain_graph)
        return self.computed


@pytest.mark.parametrize("num", [2, 5])
def test_the_hand_written_gram_step_takes_the_librarys_step(num: int) -> None:
    """From the same model, optimiser state and batch, the hand-written GradCos step and the
    library's Gram path compute the same Gram matrix and weights and end at the same
    parameters after two steps (float32 rounding); the library takes the same route (each
    linear layer's share from its rows' kernel, one pass through the heads)."""
    benchmark = _benchmark()
    torch.manual_seed(0)
    by_hand = benchmark.Setup("mlp", num, 16)
    library = copy.deepcopy(by_hand)
    # Plain SGD (Adam would magnify rounding in near-zero gradients), each on its own copy.
    library.optimizer = torch.optim.SGD(library.params, lr=0.1)
    by_hand.optimizer = torch.optim.SGD(by_hand.params, lr=0.1)
    rule = GradCos(num, main=0)
    recorder = _Kept(library.shared, [library.trunk, library.heads], cut=library.trunk)
    for _ in range(2):
        gram, weights = benchmark.arithmetic_step(by_hand, rule)
        with recorder:
            losses = library.losses()
        library.optimizer.zero_grad(set_to_none=True)
        step = rule.backward(losses, library.shared, params=library.params, gram=recorder)
        assert recorder.used_readers
        linears = [m for m in library.trunk if isinstance(m, nn.Linear)]
        assert [id(m) for m in recorder.kernel_layers] == [id(m) for m in linears]
        torch.testing.assert_close(recorder.computed, gram, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(step.weights, weights, rtol=1e-5, atol=1e-7)
        recorder.clear()
        library.optimizer.step()
    for got, want in zip(by_hand.params, library.params, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    moved = benchmark.Setup("mlp", num, 16).params  # the same seed's starting point
    assert any(not torch.equal(a, b) for a, b in zip(by_hand.params, moved, strict=True))


def test_the_hand_written_step_refuses_a_trunk_it_does_not_cover() -> None:
    benchmark = _benchmark()
    with pytest.raises(ValueError, match="mlp trunk only"):
        benchmark.arithmetic(benchmark.Setup("cnn", 2, 4))


def test_the_recording_table_times_both_passes_and_their_difference(tmp_path: Path) -> None:
    """`--recording` writes one row per K: the plain and the recorded forward pass and the
    second minus the first, under the line naming the command that measured it."""
    benchmark = _benchmark()
    out = tmp_path / "recording.md"
    argv = ["--recording", "--ks", "2", "3", "--repeats", "1", "--steps", "2", "--out", str(out)]
    assert benchmark.main(argv) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert "`python3 benchmarks/gram_weighting.py --recording --repeats 1 --steps 2`" in lines[0]
    assert lines[2] == "| K | plain | recorded | difference |"
    rows = [line.strip("|").split("|") for line in lines[4:]]
    assert [int(row[0]) for row in rows] == [2, 3]
    for _, plain, recorded, difference in rows:
        assert float(plain) > 0 and float(recorded) > 0
        assert float(difference) == pytest.approx(float(recorded) - float(plain), abs=2e-3)
