"""Normalised decision quality and the cached quality references."""

from __future__ import annotations

import pytest
import torch
from twcore_task_decision.cubic_topk import CubicTopK, CubicTopKConfig
from twcore_task_decision.quality import (
    QualityReference,
    normalised_decision_quality,
    quality_reference,
)

from twcore.contract.batch import Batch


@pytest.fixture(autouse=True)
def _private_data_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TWCORE_CACHE_DIR", str(tmp_path / "cache"))


def test_ndq_is_zero_at_random_one_at_optimal_and_linear_between():
    assert normalised_decision_quality(2.0, 2.0, 6.0) == 0.0
    assert normalised_decision_quality(6.0, 2.0, 6.0) == 1.0
    assert normalised_decision_quality(5.0, 2.0, 6.0) == 0.75
    assert normalised_decision_quality(-2.0, 2.0, 6.0) == -1.0
    assert QualityReference(dq_optimal=6.0, dq_random=2.0).normalise(4.0) == 0.5


def test_ndq_is_one_when_every_decision_is_optimal():
    # e.g. a budget that buys every item: optimal and random decisions coincide.
    assert normalised_decision_quality(3.0, 3.0, 3.0) == 1.0


def test_random_reference_averages_uniform_draws_in_the_given_range():
    # With obj = mean prediction, DQ_random is the mean of uniform draws on [2, 4]: ≈ 3.
    split = Batch(inputs=torch.zeros(500, 4, 1), targets={"y": torch.ones(500, 4)})

    def mean_objective(predictions: torch.Tensor, data: Batch) -> float:
        return float(predictions.double().mean())

    reference = quality_reference(mean_objective, split, 2.0, 4.0, seed=0)
    assert reference.dq_optimal == 1.0
    assert reference.dq_random == pytest.approx(3.0, abs=0.01)


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
