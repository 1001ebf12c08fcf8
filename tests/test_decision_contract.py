"""The decision contract's metrics and capabilities (twcore.contract.decision)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from twcore.contract.batch import Batch
from twcore.contract.decision import (
    QualityReference,
    decision_capabilities,
    normalised_decision_quality,
    quality_reference,
    regret,
)
from twcore.contract.pairing import missing
from twcore.contract.spec import Capability, Requirements, single_objective_spec


class TopTwo:
    """Choose 2 of n items; obj(y, z) = yᵀz (per-instance layout)."""

    head = "y"
    layout = "per-instance"
    linear = True

    def decide(self, predictions, batch):
        return torch.softmax(predictions, dim=-1) * 2

    def objective(self, decisions, batch):
        return (decisions * batch.targets["y"]).sum(dim=-1)

    def values(self, predictions):
        return predictions

    def true_values(self, batch):
        return batch.targets["y"]

    def solve(self, values, batch):
        chosen = values.topk(2, dim=-1).indices
        return torch.zeros_like(values).scatter(-1, chosen, 1.0)


def test_ndq_is_zero_at_random_one_at_optimal_and_linear_between():
    assert normalised_decision_quality(2.0, 2.0, 6.0) == 0.0
    assert normalised_decision_quality(6.0, 2.0, 6.0) == 1.0
    assert normalised_decision_quality(5.0, 2.0, 6.0) == 0.75
    assert normalised_decision_quality(-2.0, 2.0, 6.0) == -1.0
    # e.g. a budget that buys every item: optimal and random decisions coincide.
    assert normalised_decision_quality(3.0, 3.0, 3.0) == 1.0


def test_the_metrics_of_a_reference_are_their_definitions():
    reference = QualityReference(dq_optimal=6.0, dq_random=2.0, optimal_magnitude=8.0)
    metrics = reference.metrics(4.0)
    assert metrics == {
        "objective": 4.0,
        "regret": 2.0,
        "normalised_regret": 0.25,
        "ndq": 0.5,
        "dq_optimal": 6.0,
        "dq_random": 2.0,
    }


def test_the_random_reference_averages_uniform_draws_in_the_given_range():
    # With obj = mean value, DQ_random is the mean of uniform draws on [2, 4]: ≈ 3.
    truth = -torch.ones(500, 4)
    reference = quality_reference(lambda v: v.double().mean(dim=1), truth, 2.0, 4.0, seed=0)
    assert reference.dq_optimal == -1.0 and reference.optimal_magnitude == 1.0
    assert reference.dq_random == pytest.approx(3.0, abs=0.01)


def test_regret_is_the_gap_to_the_best_subset_by_brute_force():
    generator = torch.Generator().manual_seed(0)
    y = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    predictions = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    batch = Batch(inputs=torch.zeros(6, 3), targets={"y": y})
    subsets = list(itertools.combinations(range(5), 2))
    for i in range(6):
        best = max(float(y[i, list(s)].sum()) for s in subsets)
        picked = predictions[i].topk(2).indices
        expected = best - float(y[i, picked].sum())
        assert float(regret(TopTwo(), predictions, batch)[i]) == pytest.approx(expected)
    assert (regret(TopTwo(), y, batch) == 0).all()


def test_capabilities_follow_what_the_layer_offers():
    class Plain:
        head = "y"

        def decide(self, predictions, batch): ...
        def objective(self, decisions, batch): ...

    class Quadratic(TopTwo):
        linear = False

    assert decision_capabilities(Plain()) == {Capability.DECISION}
    assert decision_capabilities(Quadratic()) == {Capability.DECISION, Capability.DECISION_SOLVER}
    assert decision_capabilities(TopTwo()) == {
        Capability.DECISION,
        Capability.DECISION_SOLVER,
        Capability.LINEAR_DECISION,
        Capability.AFFINE_DECISION,  # a linear objective is affine (r = 0)
    }

    class Penalised(Quadratic):
        affine = True  # yᵀz − r(z)

    assert decision_capabilities(Penalised()) == {
        Capability.DECISION,
        Capability.DECISION_SOLVER,
        Capability.AFFINE_DECISION,
    }
    plain = single_objective_spec((3,), "y", 4, "regression")
    spec = dataclasses.replace(plain, capabilities=decision_capabilities(Plain()))
    needs = Requirements(capabilities=frozenset({Capability.LINEAR_DECISION}))
    assert missing(needs, spec) == ["a decision objective linear in the true values (yᵀz)"]
