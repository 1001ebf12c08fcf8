"""The decision-focused losses against brute force and closed forms on tiny instances, their
engine methods against the method conformance suite, and SPO+'s and PFYL's claim on cubic top-k:
decision quality where fitting the predictions ranks the items backwards."""

from __future__ import annotations

import itertools
import json
import math
import runpy
from pathlib import Path

import pytest
import torch
from torch import Tensor
from twcore_method_dfl.losses import (
    SolutionPool,
    noise_contrastive,
    perturbed_fenchel_young,
    perturbed_optimum,
    rank_listwise,
    rank_pointwise,
    spo_plus,
)

import twcore
from twcore.contract.batch import Batch
from twcore.contract.errors import IncompatiblePairingError
from twcore.testing import MethodConformance

CUBIC = {"train_size": 64, "val_size": 32, "test_size": 64}


class ChooseK:
    """Choose k of n items, obj(y, z) = yᵀz; a per-instance layer solved by enumeration."""

    head = "y"
    layout = "per-instance"
    linear = True

    def __init__(self, n: int, k: int) -> None:
        subsets = list(itertools.combinations(range(n), k))
        self.feasible = torch.zeros(len(subsets), n, dtype=torch.float64)
        for row, subset in enumerate(subsets):
            self.feasible[row, list(subset)] = 1.0

    def decide(self, predictions, batch):
        return torch.softmax(predictions, dim=-1)

    def objective(self, decisions, batch):
        return (decisions * batch.targets["y"]).sum(-1)

    def values(self, predictions):
        return predictions

    def true_values(self, batch):
        return batch.targets["y"]

    def solve(self, values, batch):  # brute force: the best of every feasible z
        feasible = self.feasible.to(values.dtype)
        return feasible[(values @ feasible.T).argmax(dim=-1)]


class PenalisedChooseK(ChooseK):
    """Choose k of n with obj(y, z) = yᵀz − zᵀQz, Q per instance from the batch's context (an
    affine objective, not linear), solved by enumeration."""

    linear = False
    affine = True

    def objective(self, decisions, batch):
        penalty = torch.einsum("bi,bij,bj->b", decisions, batch.context["q"], decisions)
        return (decisions * batch.targets["y"]).sum(-1) - penalty

    def solve(self, values, batch):
        feasible = self.feasible.to(values.dtype)
        scores = values @ feasible.T - torch.einsum(
            "fi,bij,fj->bf", feasible, batch.context["q"].to(values.dtype), feasible
        )
        return feasible[scores.argmax(dim=-1)]


def _penalised_instances(n: int = 5, b: int = 6, seed: int = 0) -> tuple[Tensor, Batch]:
    predictions, batch = _instances(n, b, seed)
    generator = torch.Generator().manual_seed(seed + 100)
    q = torch.randn(b, n, n, generator=generator, dtype=torch.float64)
    return predictions, Batch(inputs=batch.inputs, targets=batch.targets, context={"q": q})


def _instances(n: int = 5, b: int = 6, seed: int = 0) -> tuple[Tensor, Batch]:
    generator = torch.Generator().manual_seed(seed)
    y = torch.randn(b, n, generator=generator, dtype=torch.float64)
    predictions = torch.randn(b, n, generator=generator, dtype=torch.float64)
    return predictions, Batch(inputs=torch.zeros(b, 1), targets={"y": y})


def test_spo_plus_is_its_formula_by_brute_force_with_the_spo_plus_subgradient():
    layer = ChooseK(5, 2)
    predictions, batch = _instances()
    y = batch.targets["y"]
    predictions.requires_grad_(True)
    loss = spo_plus(layer, predictions, batch)
    (grad,) = torch.autograd.grad(loss.sum(), predictions)
    feasible, predictions, loss = layer.feasible, predictions.detach(), loss.detach()
    for i in range(len(y)):
        contrast = feasible[((2 * predictions[i] - y[i]) @ feasible.T).argmax()]
        best = feasible[(y[i] @ feasible.T).argmax()]
        expected = float(
            (2 * predictions[i] - y[i]) @ contrast - 2 * predictions[i] @ best + y[i] @ best
        )
        assert float(loss[i]) == pytest.approx(expected)
        torch.testing.assert_close(grad[i], 2 * (contrast - best))
        # a convex upper bound of the regret, zero at the truth
        chosen = feasible[(predictions[i] @ feasible.T).argmax()]
        assert float(loss[i]) >= float(y[i] @ best - y[i] @ chosen) - 1e-12
    assert torch.allclose(spo_plus(layer, y, batch), torch.zeros(len(y), dtype=y.dtype))


def test_spo_plus_on_an_affine_objective_is_its_formula_by_brute_force():
    """obj = yᵀz − zᵀQz: SPO+ = max_z [(2ŷ − y)ᵀz − r(z)] − [(2ŷ − y)ᵀz* − r(z*)], enumerated;
    subgradient 2(ẑ − z*); an upper bound of the regret; zero at the truth."""
    layer = PenalisedChooseK(5, 2)
    predictions, batch = _penalised_instances()
    y, q = batch.targets["y"], batch.context["q"]
    predictions.requires_grad_(True)
    loss = spo_plus(layer, predictions, batch)
    (grad,) = torch.autograd.grad(loss.sum(), predictions)
    feasible, predictions, loss = layer.feasible, predictions.detach(), loss.detach()
    for i in range(len(y)):
        penalties = torch.einsum("fi,ij,fj->f", feasible, q[i], feasible)
        contrast_values = 2 * predictions[i] - y[i]
        c, b, chosen = (
            int((values @ feasible.T - penalties).argmax())
            for values in (contrast_values, y[i], predictions[i])
        )
        expected = float(
            contrast_values @ feasible[c] - penalties[c] - contrast_values @ feasible[b]
        ) + float(penalties[b])
        assert float(loss[i]) == pytest.approx(expected, abs=1e-12)
        torch.testing.assert_close(grad[i], 2 * (feasible[c] - feasible[b]))
        true_objectives = y[i] @ feasible.T - penalties
        regret = float(true_objectives[b] - true_objectives[chosen])
        assert regret >= 0 and float(loss[i]) >= regret - 1e-12
    assert torch.allclose(spo_plus(layer, y, batch), torch.zeros(len(y), dtype=y.dtype))


class LinearPenaltyChooseK(ChooseK):
    """obj = yᵀz − cᵀz: affine, and the same problem as the linear one with values shifted by
    −c, which gives the losses an independent reference."""

    linear = False
    affine = True

    def objective(self, decisions, batch):
        return (decisions * (batch.targets["y"] - batch.context["c"])).sum(-1)

    def solve(self, values, batch):
        return super().solve(values - batch.context["c"].to(values.dtype), batch)


def test_the_affine_surrogates_equal_the_linear_ones_on_shifted_values():
    """With r(z) = cᵀz, SPO+ and PFYL of ŷ against y are the linear losses of ŷ − c against
    y − c (the same noise drawn from the same seed)."""
    predictions, batch = _instances(n=6, b=5, seed=3)
    shift = torch.randn(5, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    affine_batch = Batch(inputs=batch.inputs, targets=batch.targets, context={"c": shift})
    shifted = Batch(inputs=batch.inputs, targets={"y": batch.targets["y"] - shift})
    affine, linear = LinearPenaltyChooseK(6, 3), ChooseK(6, 3)
    torch.testing.assert_close(
        spo_plus(affine, predictions, affine_batch), spo_plus(linear, predictions - shift, shifted)
    )
    for seed in (0, 1):
        torch.testing.assert_close(
            perturbed_fenchel_young(
                affine, predictions, affine_batch, sigma=0.5, samples=7,
                generator=torch.Generator().manual_seed(seed),
            ),
            perturbed_fenchel_young(
                linear, predictions - shift, shifted, sigma=0.5, samples=7,
                generator=torch.Generator().manual_seed(seed),
            ),
        )  # fmt: skip


def _gaussian_max(d: float, scale: float) -> tuple[float, float]:
    """E[max(a + σZ1, b + σZ2)] − b and P(first is the max), for d = a − b, s = σ√2 (Clark)."""
    u = d / scale
    cdf = 0.5 * (1 + math.erf(u / math.sqrt(2)))
    pdf = math.exp(-u * u / 2) / math.sqrt(2 * math.pi)
    return d * cdf + scale * pdf, cdf


def test_the_perturbed_losses_match_the_closed_forms_of_choosing_one_of_two():
    """Top-1 of 2 items with Gaussian perturbation σ: E max is Clark's formula, the perturbed
    optimum is z̄_1 = Φ(d / σ√2) and dz̄_1/dŷ_1 = φ(d / σ√2) / σ√2."""
    layer, sigma, samples = ChooseK(2, 1), 0.7, 200_000
    predictions = torch.tensor([[0.3, -0.2]], dtype=torch.float64, requires_grad=True)
    batch = Batch(inputs=torch.zeros(1, 1), targets={"y": torch.tensor([[-1.0, 2.0]]).double()})
    d, scale = 0.5, sigma * math.sqrt(2)
    expected_max, first = _gaussian_max(d, scale)

    loss = perturbed_fenchel_young(
        layer, predictions, batch, sigma=sigma, samples=samples,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    # E max − ŷᵀz*(y) = (ŷ_2 + Clark's excess) − ŷ_2, with z*(y) the second item
    assert float(loss.detach()) == pytest.approx(expected_max, abs=5e-3)
    (grad,) = torch.autograd.grad(loss.sum(), predictions)
    torch.testing.assert_close(
        grad, torch.tensor([[first, 1 - first - 1]]).double(), atol=5e-3, rtol=0
    )

    decisions = perturbed_optimum(
        layer, predictions, batch, sigma=sigma, samples=samples,
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    assert float(decisions[0, 0].detach()) == pytest.approx(first, abs=5e-3)
    (slope,) = torch.autograd.grad(decisions[0, 0], predictions)
    density = math.exp(-((d / scale) ** 2) / 2) / math.sqrt(2 * math.pi) / scale
    torch.testing.assert_close(
        slope, torch.tensor([[density, -density]]).double(), atol=1e-2, rtol=0
    )


def test_the_pooled_losses_are_their_sums_over_the_pool():
    layer = ChooseK(4, 2)
    predictions, batch = _instances(n=4, b=3)
    y = batch.targets["y"]
    pool = layer.feasible[[0, 2, 5]]
    predictions.requires_grad_(True)
    nce = noise_contrastive(layer, predictions, batch, pool)
    (grad,) = torch.autograd.grad(nce.sum(), predictions)
    predictions, nce = predictions.detach(), nce.detach()
    pointwise = rank_pointwise(layer, predictions, batch, pool)
    listwise = rank_listwise(layer, predictions, batch, pool, temperature=0.5)
    for i in range(3):
        best = layer.solve(y[i : i + 1], batch)[0]
        scores = [float(predictions[i] @ z) for z in pool]
        truths = [float(y[i] @ z) for z in pool]
        assert float(nce[i]) == pytest.approx(sum(scores) / 3 - float(predictions[i] @ best))
        torch.testing.assert_close(grad[i], pool.mean(0) - best)
        expected = sum((s - t) ** 2 for s, t in zip(scores, truths, strict=True)) / 3
        assert float(pointwise[i]) == pytest.approx(expected)
        weights = [math.exp(t / 0.5) for t in truths]
        logs = [s / 0.5 - math.log(sum(math.exp(v / 0.5) for v in scores)) for s in scores]
        cross = -sum(w / sum(weights) * log for w, log in zip(weights, logs, strict=True))
        assert float(listwise[i]) == pytest.approx(cross)


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("loss_name", ["spo-plus", "pfyl", "nce"])
def test_the_losses_read_the_stored_true_optima_instead_of_solving_them(loss_name, affine):
    """With the batch's ``context["true_decisions"]`` (a task's stored z*(y)) the losses take
    the same values and gradients as when they solve z*(y), on a linear and an affine
    objective, and ask the solver for b fewer instances a call."""
    layer = PenalisedChooseK(5, 2) if affine else ChooseK(5, 2)
    predictions, batch = _penalised_instances(b=6) if affine else _instances(b=6)
    stored = Batch(
        inputs=batch.inputs,
        targets=batch.targets,
        context={**batch.context, "true_decisions": layer.solve(batch.targets["y"], batch)},
    )
    solved = []
    solve = layer.solve
    layer.solve = lambda values, data: solved.append(len(values)) or solve(values, data)
    pool = layer.feasible[[0, 3, 7]]

    def loss(data):
        weights = predictions.detach().clone().requires_grad_(True)
        if loss_name == "spo-plus":
            value = spo_plus(layer, weights, data)
        elif loss_name == "pfyl":
            value = perturbed_fenchel_young(
                layer, weights, data, sigma=0.5, samples=4,
                generator=torch.Generator().manual_seed(3),
            )  # fmt: skip
        else:
            value = noise_contrastive(layer, weights, data, pool)
        (grad,) = torch.autograd.grad(value.sum(), weights)
        return value.detach(), grad

    solved_value, solved_grad = loss(batch)
    solving, solved[:] = sum(solved), []
    stored_value, stored_grad = loss(stored)
    assert sum(solved) == solving - len(predictions)
    torch.testing.assert_close(stored_value, solved_value, rtol=0, atol=0)
    torch.testing.assert_close(stored_grad, solved_grad, rtol=0, atol=0)


def test_the_pool_keeps_distinct_solutions_in_arrival_order_up_to_its_capacity():
    pool = SolutionPool(capacity=3)
    rows = torch.eye(4)
    pool.add(rows[[0, 1, 0]])
    assert torch.equal(pool.solutions, rows[[0, 1]])
    pool.add(rows[[1, 2, 3]])
    assert torch.equal(pool.solutions, rows[[1, 2, 3]])  # the oldest left
    restored = SolutionPool(capacity=3)
    restored.load_state_dict(pool.state_dict())
    assert torch.equal(restored.solutions, pool.solutions)


class TestSPOPlusConformance(MethodConformance):
    method = "spo-plus"
    task = "cubic-topk"
    model = "linear"
    task_options = CUBIC


class TestPerturbedFenchelYoungConformance(MethodConformance):
    method = "pfyl"
    task = "cubic-topk"
    model = "linear"
    task_options = CUBIC


PORTFOLIO = {"train_size": 32, "val_size": 16, "test_size": 32}


class TestSPOPlusOnAnAffineObjectiveConformance(MethodConformance):
    method = "spo-plus"
    task = "portfolio"  # yᵀx − α xᵀΣx
    model = "mlp"
    task_options = PORTFOLIO
    model_options = {"hidden": [8]}


class TestPerturbedFenchelYoungOnAnAffineObjectiveConformance(MethodConformance):
    method = "pfyl"
    task = "portfolio"
    model = "mlp"
    method_options = {"samples": 3}
    task_options = PORTFOLIO
    model_options = {"hidden": [8]}


class TestPerturbedOptimizerConformance(MethodConformance):
    method = "dpo"
    task = "budget-allocation"  # any exact solver: the objective need not be linear
    model = "mlp"
    method_options = {"samples": 3}
    task_options = {"train_size": 32, "val_size": 16, "test_size": 32}
    model_options = {"hidden": [8]}


class TestPerturbedOptimizerOnCubicTopKConformance(MethodConformance):
    method = "dpo"
    task = "cubic-topk"
    model = "linear"
    method_options = {"samples": 2}
    task_options = CUBIC


class TestPerturbedOptimizerOnPortfolioConformance(MethodConformance):
    method = "dpo"
    task = "portfolio"
    model = "mlp"
    method_options = {"samples": 2, "sigma": 0.02}
    task_options = PORTFOLIO
    model_options = {"hidden": [8]}


class TestNoiseContrastiveConformance(MethodConformance):
    method = "nce"
    task = "cubic-topk"
    model = "linear"
    task_options = CUBIC
    method_options = {"solve_ratio": 0.5}


class TestLearningToRankConformance(MethodConformance):
    method = "ltr"
    task = "cubic-topk"
    model = "linear"
    task_options = CUBIC
    method_options = {"form": "pointwise", "solve_ratio": 0.5}


@pytest.mark.parametrize("method", ["spo-plus", "pfyl"])
def test_a_surrogate_of_the_regret_ranks_the_items_right_where_the_fit_fails(method, tmp_path):
    """The papers' claim on the LODL trap: the least-squares line ranks cubic top-k's items
    backwards (ndq ≈ −0.94), a loss built on the decisions picks the best ones."""
    common = ["task=cubic-topk", "model=linear", "wandb.enabled=false", "steps=300"]
    fit = twcore.run([*common, "method=two-stage", "optim.lr=0.05", f"run_dir={tmp_path / 'a'}"])
    decided = twcore.run(
        [*common, f"method={method}", "optim.lr=0.05", f"run_dir={tmp_path / 'b'}"]
    )
    assert fit.metrics["test"]["ndq"] < -0.8 < 0.9 < decided.metrics["test"]["ndq"]
    assert (
        decided.metrics["test"]["normalised_regret"]
        < 0.1
        < fit.metrics["test"]["normalised_regret"]
    )


def test_losses_on_linear_objectives_refuse_other_tasks(tmp_path):
    with pytest.raises(IncompatiblePairingError, match="linear in the true values"):
        twcore.run(["method=nce", "task=portfolio", f"run_dir={tmp_path / 'r'}"])
    with pytest.raises(IncompatiblePairingError, match="independent of the true values"):
        twcore.run(["method=spo-plus", "task=budget-allocation", f"run_dir={tmp_path / 's'}"])


def test_the_committed_pyepo_comparison_is_what_its_script_computes(tmp_path):
    """docs/pyepo_comparison.md is the script's output from the committed report and PyEPO's
    committed rows (no number typed in), and its PyEPO means are the rows' means."""
    docs = Path(__file__).resolve().parents[1] / "docs"
    script = docs.parent / "benchmarks" / "pyepo_comparison.py"
    main = runpy.run_path(str(script))["main"]
    assert main(["--out", str(tmp_path / "table.md")]) == 0
    committed = (docs / "pyepo_comparison.md").read_text(encoding="utf-8")
    assert (tmp_path / "table.md").read_text(encoding="utf-8") == committed
    published = json.loads((docs / "pyepo_published.json").read_text(encoding="utf-8"))
    runs = published["tasks"]["shortest-path"]["methods"]["pfyl"]["normalised_regret"]
    assert len(runs) == 10
    assert f"| {sum(runs) / len(runs):.3g} ± " in committed


SMALL = {"train_size": 16, "val_size": 8, "test_size": 8}
PER_INSTANCE_TASKS = {
    "knapsack": {**SMALL, "num_items": 8, "capacity": 10.0},
    "shortest-path": SMALL,
}
FAST_METHOD_OPTIONS = {
    "pfyl": {"samples": 2},
    "dpo": {"samples": 2},
    "nce": {"solve_ratio": 0.5},
    "ltr": {"solve_ratio": 0.5},
}


def _conformance_class(method: str, task: str) -> type:
    """The method conformance suite for `method` on a per-instance (PyEPO) task."""
    return type(
        f"Test{method.title().replace('-', '')}On{task.title().replace('-', '')}Conformance",
        (MethodConformance,),
        {
            "method": method,
            "task": task,
            "model": "linear",
            "task_options": PER_INSTANCE_TASKS[task],
            "method_options": FAST_METHOD_OPTIONS.get(method, {}),
        },
    )


# Every solver-based loss on both per-instance tasks (the per-item ones are above).
for _method in ("spo-plus", "pfyl", "dpo", "nce", "ltr"):
    for _task in PER_INSTANCE_TASKS:
        _suite = _conformance_class(_method, _task)
        globals()[_suite.__name__] = _suite
