"""The cached quality references of the decision tasks."""

from __future__ import annotations

import pytest
import torch
from twcore_task_decision.cubic_topk import CubicTopK, CubicTopKConfig


@pytest.fixture(autouse=True)
def _private_data_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TWCORE_CACHE_DIR", str(tmp_path / "cache"))


def test_references_are_cached_and_reloaded_identically(tmp_path, monkeypatch):
    first = CubicTopK(CubicTopKConfig(test_size=50))
    expected = first.quality_reference("test")
    assert list((tmp_path / "cache").rglob("decision-cubic-topk-*.pt"))
    second = CubicTopK(CubicTopKConfig(test_size=50, temperature=1.0))  # same data, same file
    assert second.quality_reference("test") == expected
    assert torch.equal(second.split("test").inputs, first.split("test").inputs)
    monkeypatch.setenv("TWCORE_CACHE_DIR", "off")
    rebuilt = CubicTopK(CubicTopKConfig(test_size=50))
    assert rebuilt.quality_reference("test") == expected


def test_the_true_values_score_zero_regret_and_the_optimal_ndq():
    task = CubicTopK(CubicTopKConfig(test_size=50))
    metrics = task.score(task.split("test").targets["y"], "test")
    assert metrics["regret"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["normalised_regret"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["ndq"] == pytest.approx(1.0)
