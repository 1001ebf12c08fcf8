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


def _benchmark() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gram_weighting.py"
    spec = importlib.util.spec_from_file_location("benchmark_gram_weighting", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("num", [2, 5])
def test_the_hand_written_gram_step_takes_the_librarys_step(num: int) -> None:
    """Two steps of the hand-written GradCos step and of the library's Gram path from the same
    model, optimiser state and batch end at the same parameters (float32 rounding)."""
    benchmark = _benchmark()
    torch.manual_seed(0)
    by_hand = benchmark.Setup("mlp", num, 16)
    library = copy.deepcopy(by_hand)
    # Plain SGD (Adam would magnify rounding in near-zero gradients), each on its own copy.
    library.optimizer = torch.optim.SGD(library.params, lr=0.1)
    by_hand.optimizer = torch.optim.SGD(by_hand.params, lr=0.1)
    hand_step = benchmark.arithmetic(by_hand)
    library_step = benchmark.CONFIGURATIONS["gradcos (gram)"](library)
    for _ in range(2):
        hand_step(by_hand)
        library_step(library)
    for got, want in zip(by_hand.params, library.params, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    moved = benchmark.Setup("mlp", num, 16).params  # the same seed's starting point
    assert any(not torch.equal(a, b) for a, b in zip(by_hand.params, moved, strict=True))


def test_the_hand_written_step_refuses_a_trunk_it_does_not_cover() -> None:
    benchmark = _benchmark()
    with pytest.raises(ValueError, match="mlp trunk only"):
        benchmark.arithmetic(benchmark.Setup("cnn", 2, 4))
