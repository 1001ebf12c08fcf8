"""Each rule's sub-problem against an independent solution: cvxpy for the optimisation problems
(MGDA's min-norm point, CAGrad's primal, Nash-MTL's bargaining problem, the simplex QP), a loop
over explicit gradient vectors for PCGrad, the papers' closed forms on explicit vectors for
IMTL and Aligned-MTL, and hand-written updates for the loss weightings. Then the three ways a
Gram rule gets its matrix (a recorded forward pass, the gradient rows, a shared representation)
against each other."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch
from torch import Tensor, nn
from twcore_method_mtl import (
    FAMO,
    IMTL,
    MGDA,
    AlignedMTL,
    CAGrad,
    DynamicWeightAverage,
    GradNorm,
    NashMTL,
    PCGrad,
    RandomLossWeighting,
    UncertaintyWeighting,
    alignment_matrix,
    bargaining_coefficients,
    conflict_averse_weights,
    impartial_coefficients,
    min_norm_weights,
    simplex_qp,
    surgery_coefficients,
)
from twcore_method_mtl.pcgrad import projection_orders

from twcore.autodiff import GramRecorder
from twcore.contract import weighting
from twcore.contract.gram_weighting import GramWeighting


def _rows(size: int, dimension: int = 12, seed: int = 0, shift: float = 0.2) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(size, dimension, generator=generator, dtype=torch.float64) + shift


CASES = [(2, 0), (3, 1), (5, 2), (8, 3)]


@pytest.mark.parametrize(("size", "seed"), CASES)
def test_simplex_qp_matches_cvxpy(size, seed):
    rows = _rows(size, seed=seed)
    quadratic = rows @ rows.T
    linear = torch.randn(size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ours = simplex_qp(quadratic, linear)
    w = cp.Variable(size)
    objective = 0.5 * cp.sum_squares(rows.numpy().T @ w) + linear.numpy() @ w
    problem = cp.Problem(cp.Minimize(objective), [w >= 0, cp.sum(w) == 1])
    problem.solve()
    value = float(0.5 * ours @ quadratic @ ours + linear @ ours)
    assert value <= problem.value + 1e-7
    assert float(ours.min()) >= 0 and float(ours.sum()) == pytest.approx(1.0)


@pytest.mark.parametrize(("size", "seed"), CASES)
def test_mgda_min_norm_point_matches_cvxpy(size, seed):
    rows = _rows(size, seed=seed)
    ours = rows.T @ min_norm_weights(rows @ rows.T)
    w = cp.Variable(size)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(rows.numpy().T @ w)), [w >= 0, cp.sum(w) == 1])
    problem.solve()
    reference = rows.numpy().T @ w.value  # the min-norm point is unique, the weights may not be
    np.testing.assert_allclose(ours.numpy(), reference, atol=1e-5)


def test_mgda_decreases_every_objective_unless_pareto_stationary():
    """The paper's claim: the min-norm direction d has g_kᵀd ≥ ‖d‖² > 0 for every k."""
    rows = torch.tensor([[1.0, 0.2], [-0.6, 1.0], [0.3, 0.9]], dtype=torch.float64)
    direction = rows.T @ min_norm_weights(rows @ rows.T)
    assert float(direction.norm()) > 0
    assert bool((rows @ direction >= direction @ direction - 1e-12).all())
    opposed = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)  # stationary
    assert float((opposed.T @ min_norm_weights(opposed @ opposed.T)).norm()) < 1e-12


def test_mgda_normalisations_scale_the_gradients_before_solving():
    rows = _rows(3, seed=4)
    losses = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    norms = rows.norm(dim=1)
    for name, scales in {"l2": norms, "loss": losses, "loss+": losses * norms}.items():
        weights, _ = MGDA(3, normalization=name).coefficients(rows @ rows.T, losses)
        scaled = rows / scales.unsqueeze(1)
        torch.testing.assert_close(weights, min_norm_weights(scaled @ scaled.T))


def _pcgrad_loop(rows: Tensor, orders: Tensor) -> Tensor:
    """Alg. 1 of the paper, written out on explicit gradient vectors."""
    projected = []
    for i in range(rows.shape[0]):
        gradient = rows[i].clone()
        for j in orders[i].tolist():
            dot = gradient @ rows[j]
            if dot < 0:
                gradient = gradient - dot / (rows[j] @ rows[j]) * rows[j]
        projected.append(gradient)
    return torch.stack(projected).sum(dim=0)


@pytest.mark.parametrize(("size", "seed"), CASES)
def test_pcgrad_matches_the_papers_loop(size, seed):
    rows = _rows(size, seed=seed, shift=0.0)
    orders = projection_orders(size, torch.Generator().manual_seed(seed))
    combination, _ = surgery_coefficients(rows @ rows.T, orders)
    torch.testing.assert_close(combination.sum(dim=0) @ rows, _pcgrad_loop(rows, orders))
    rule = PCGrad(size, seed=seed)
    weights, _ = rule.coefficients(rows @ rows.T, torch.ones(size, dtype=torch.float64))
    torch.testing.assert_close(weights @ rows, _pcgrad_loop(rows, orders))


def test_pcgrad_removes_the_conflict_of_two_objectives():
    """The paper's two-task case: the surgered direction increases neither loss to first order."""
    rows = torch.tensor([[1.0, 0.1], [-0.8, 0.5]], dtype=torch.float64)
    assert float(rows[0] @ rows[1]) < 0
    weights, logs = PCGrad(2).coefficients(rows @ rows.T, torch.ones(2, dtype=torch.float64))
    assert logs["projections"] == 2
    assert bool((rows @ (weights @ rows) >= -1e-12).all())


def _cagrad_primal(rows: np.ndarray, c: float) -> np.ndarray:
    """max_d min_k g_kᵀd s.t. ‖d − g0‖ ≤ c‖g0‖ (the paper's eq. 4) in cvxpy."""
    average = rows.mean(axis=0)
    d, t = cp.Variable(rows.shape[1]), cp.Variable()
    constraints = [rows @ d >= t, cp.norm(d - average) <= c * np.linalg.norm(average)]
    cp.Problem(cp.Maximize(t), constraints).solve()
    return d.value


@pytest.mark.parametrize(("size", "seed"), CASES)
def test_cagrad_direction_is_the_primal_solution(size, seed):
    rows = _rows(size, seed=seed)
    rule = CAGrad(size, c=0.4, rescale="none")
    weights, _ = rule.coefficients(rows @ rows.T, torch.ones(size, dtype=torch.float64))
    reference = _cagrad_primal(rows.numpy(), 0.4)
    np.testing.assert_allclose((weights @ rows).numpy(), reference, atol=2e-4)
    # The claim: no worse a worst objective than the average gradient's.
    average = rows.mean(dim=0)
    assert float((rows @ (weights @ rows)).min()) >= float((rows @ average).min()) - 1e-9


def test_cagrad_with_c_zero_is_the_average_gradient_and_rescales():
    rows = _rows(3, seed=5)
    weights, _ = CAGrad(3, c=0.0).coefficients(rows @ rows.T, torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(weights, torch.full((3,), 1 / 3, dtype=torch.float64))
    plain, _ = CAGrad(3, c=0.5, rescale="none").coefficients(rows @ rows.T, torch.ones(3))
    scaled, _ = CAGrad(3, c=0.5).coefficients(rows @ rows.T, torch.ones(3))
    torch.testing.assert_close(scaled, plain / 1.25)
    dual = conflict_averse_weights(rows @ rows.T, 0.5)
    assert float(dual.min()) >= 0 and float(dual.sum()) == pytest.approx(1.0)


@pytest.mark.parametrize(("size", "seed"), CASES)
def test_nash_mtl_is_the_bargaining_solution_of_cvxpy(size, seed):
    rows = _rows(size, dimension=max(12, size + 2), seed=seed, shift=0.5)
    gram = rows @ rows.T
    alpha = bargaining_coefficients(gram)
    assert bool((alpha > 0).all())
    torch.testing.assert_close(gram @ alpha, 1.0 / alpha, rtol=1e-6, atol=1e-9)
    # max Σ log(g_kᵀ d) s.t. ‖d‖ ≤ 1: the same direction, up to its length.
    d = cp.Variable(rows.shape[1])
    cp.Problem(cp.Maximize(cp.sum(cp.log(rows.numpy() @ d))), [cp.norm(d) <= 1]).solve()
    ours = (alpha @ rows) / (alpha @ rows).norm()
    np.testing.assert_allclose(ours.numpy(), d.value / np.linalg.norm(d.value), atol=1e-4)
    # The bargaining property: every objective gets the same share α_k g_kᵀd.
    shares = alpha * (rows @ (alpha @ rows))
    torch.testing.assert_close(shares, torch.ones_like(shares))


def test_nash_mtl_clips_the_direction():
    rows = 10 * _rows(3, seed=2, shift=0.5)
    weights, logs = NashMTL(3, max_norm=0.5).coefficients(rows @ rows.T, torch.ones(3))
    assert float((weights @ rows).norm()) == pytest.approx(0.5)
    assert logs["clipped"] == 1.0


def _imtl_closed_form(rows: Tensor) -> Tensor:
    """The paper's α_{2:K} = g_1 Uᵀ (D Uᵀ)⁻¹ on explicit vectors, α_1 = 1 − Σ α_{2:K}."""
    units = rows / rows.norm(dim=1, keepdim=True)
    differences = rows[:1] - rows[1:]
    unit_differences = units[:1] - units[1:]
    rest = rows[:1] @ unit_differences.T @ torch.linalg.inv(differences @ unit_differences.T)
    return torch.cat([1 - rest.sum(dim=1), rest.squeeze(0)])


@pytest.mark.parametrize(("size", "seed"), CASES)
def test_imtl_matches_the_papers_closed_form_and_projects_equally(size, seed):
    rows = _rows(size, seed=seed)
    alpha = impartial_coefficients(rows @ rows.T)
    torch.testing.assert_close(alpha, _imtl_closed_form(rows))
    direction = alpha @ rows
    projections = (rows / rows.norm(dim=1, keepdim=True)) @ direction
    torch.testing.assert_close(projections, projections[0].expand(size))


def test_imtl_loss_scales_move_towards_equal_scaled_losses():
    rule = IMTL(2, lr=0.05)
    gram = torch.eye(2, dtype=torch.float64)
    losses = torch.tensor([4.0, 0.25], dtype=torch.float64)
    for _ in range(200):
        rule.coefficients(gram, losses)
    scaled = rule.scales.value.exp() * losses
    torch.testing.assert_close(scaled, torch.ones(2, dtype=torch.float64), atol=0.05, rtol=0)


@pytest.mark.parametrize(("size", "seed"), CASES)
def test_aligned_gradients_are_orthogonal_with_equal_norms(size, seed):
    rows = _rows(size, seed=seed)
    gram = rows @ rows.T
    alignment, rank = alignment_matrix(gram)
    assert rank == size
    aligned = alignment @ rows
    smallest = torch.linalg.eigvalsh(gram).min()
    torch.testing.assert_close(aligned @ aligned.T, smallest * torch.eye(size, dtype=torch.float64))
    weights, _ = AlignedMTL(size).coefficients(gram, torch.ones(size, dtype=torch.float64))
    torch.testing.assert_close(weights @ rows, aligned.mean(dim=0))


def test_aligned_mtl_keeps_the_range_of_a_rank_deficient_gram():
    rows = _rows(2, seed=1)
    rows = torch.cat([rows, rows[:1] + rows[1:]])  # rank 2 of 3
    alignment, rank = alignment_matrix(rows @ rows.T)
    assert rank == 2
    assert bool(torch.isfinite(alignment).all())


def test_gradnorm_step_is_the_papers_update():
    rows = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    rule = GradNorm(2, alpha=1.0, lr=0.1)
    losses = torch.tensor([1.0, 1.0], dtype=torch.float64)
    weights, _ = rule.coefficients(rows @ rows.T, losses)  # L(0) = losses: target = mean norm
    torch.testing.assert_close(weights, torch.ones(2, dtype=torch.float64))
    # G = (3, 1), target 2: sign(G − 2)·‖g‖ = (+3, −1); Adam's first step is −lr·sign.
    expected = torch.tensor([1 - 0.1, 1 + 0.1], dtype=torch.float64)
    torch.testing.assert_close(rule.weights.value, expected * 2 / expected.sum())


def test_gradnorm_balances_the_weighted_gradient_norms():
    rows = torch.tensor([[4.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    rule = GradNorm(2, alpha=0.0, lr=0.02)
    losses = torch.ones(2, dtype=torch.float64)
    for _ in range(300):
        weights, _ = rule.coefficients(rows @ rows.T, losses)
    norms = weights * rows.norm(dim=1)
    assert float((norms[0] - norms[1]).abs()) < 0.1 * float(norms.mean())


def test_uncertainty_weights_settle_at_the_inverse_of_twice_the_loss():
    """∂/∂s (e^{−s}L + s/2) = 0 at e^{−s} = 1/(2L)."""
    rule = UncertaintyWeighting(2, lr=0.05)
    parameter = torch.zeros(1, requires_grad=True)
    values = torch.tensor([0.5, 4.0], dtype=torch.float64)
    for _ in range(600):
        step = rule.backward(parameter.sum() + values)
    torch.testing.assert_close(step.weights, 1 / (2 * values), atol=0.02, rtol=0)


def test_dwa_weights_the_objective_whose_loss_fell_least():
    rule = DynamicWeightAverage(2, temperature=2.0, period=1)
    parameter = torch.zeros(1, requires_grad=True)
    history = [(1.0, 1.0), (0.5, 0.9), (0.25, 0.85)]
    weights = [rule.backward(parameter.sum() + torch.tensor(pair)).weights for pair in history]
    torch.testing.assert_close(weights[0], torch.ones(2))
    torch.testing.assert_close(weights[1], torch.ones(2))
    ratios = torch.tensor([0.5 / 1.0, 0.9 / 1.0])
    torch.testing.assert_close(weights[2], 2 * torch.softmax(ratios / 2.0, 0))
    assert float(weights[2][1]) > float(weights[2][0])


def test_rlw_weights_average_to_equal_weighting():
    rule = RandomLossWeighting(4, seed=0)
    parameter = torch.zeros(1, requires_grad=True)
    draws = torch.stack(
        [rule.backward(parameter.sum() + torch.ones(4)).weights for _ in range(4000)]
    )
    torch.testing.assert_close(draws.mean(dim=0), torch.full((4,), 0.25), atol=0.01, rtol=0)
    torch.testing.assert_close(draws.sum(dim=1), torch.ones(4000))
    again = RandomLossWeighting(4, seed=0)
    torch.testing.assert_close(again.backward(parameter.sum() + torch.ones(4)).weights, draws[0])


def test_famo_weights_and_logit_update_are_the_papers():
    rule = FAMO(2, lr=0.1, weight_decay=0.0)
    parameter = torch.zeros(1, requires_grad=True)
    losses = torch.tensor([2.0, 0.5], dtype=torch.float64)
    step = rule.backward(parameter.sum() + losses)
    # z = (½, ½): c = 1/(½/2 + ½/0.5) = 0.8, weights c z_k / ℓ_k.
    torch.testing.assert_close(step.weights, torch.tensor([0.2, 0.8], dtype=torch.float64))
    after = torch.tensor([1.0, 0.45], dtype=torch.float64)  # objective 0 improved more
    logits = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    improvement = losses.log() - after.log()
    (gradient,) = torch.autograd.grad(torch.softmax(logits, 0) @ improvement, logits)
    rule.update(after)
    # Adam's first step: −lr·sign(gradient).
    torch.testing.assert_close(rule.logits.value, -0.1 * gradient.sign())
    assert float(torch.softmax(rule.logits.value, 0)[0]) < 0.5  # the faster one loses weight


class _Net(nn.Module):
    def __init__(self, heads: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 6)).double()
        self.heads = nn.ModuleList(nn.Linear(6, 1).double() for _ in range(heads))
        self.inputs = torch.randn(16, 4, dtype=torch.float64)
        self.targets = torch.randn(heads, 16, dtype=torch.float64)

    def losses(self, features: Tensor | None = None) -> Tensor:
        features = self.trunk(self.inputs) if features is None else features
        return torch.stack(
            [
                (head(features).squeeze(1) - target).square().mean()
                for head, target in zip(self.heads, self.targets, strict=True)
            ]
        )


GRAM_RULES = {
    "mgda": lambda: MGDA(3),
    "pcgrad": lambda: PCGrad(3, seed=0),
    "cagrad": lambda: CAGrad(3),
    "nash-mtl": lambda: NashMTL(3),
    "imtl": lambda: IMTL(3),
    "aligned-mtl": lambda: AlignedMTL(3),
    "gradnorm": lambda: GradNorm(3),
}


def _gradients(net: nn.Module) -> dict[str, Tensor]:
    return {name: p.grad.clone() for name, p in net.named_parameters()}


def _no_pass_through_the_heads(*args, **kwargs):
    raise AssertionError("a backward pass through the heads ran")


@pytest.mark.parametrize("cut", [False, True])
@pytest.mark.parametrize("name", sorted(GRAM_RULES))
def test_the_recorded_gram_and_the_gradient_rows_give_the_same_step(name, cut, monkeypatch):
    """With the trunk as the cut, the heads' gradients come from the recorder's one pass
    through them (GradNorm's weighted by its coefficients), with no backward pass of their
    own."""
    net = _Net(3)
    shared = list(net.trunk.parameters())
    rows_rule: GramWeighting = GRAM_RULES[name]()
    net.zero_grad()
    by_rows = rows_rule.backward(net.losses(), shared, params=net.parameters())
    expected = _gradients(net)
    net.zero_grad()
    recorder = GramRecorder(shared, net, cut=net.trunk if cut else None)
    with recorder:
        losses = net.losses()
    if cut:
        monkeypatch.setattr(weighting, "_own_backward", _no_pass_through_the_heads)
    by_gram = GRAM_RULES[name]().backward(losses, shared, params=net.parameters(), gram=recorder)
    assert recorder.used_readers == cut
    torch.testing.assert_close(by_gram.weights, by_rows.weights)
    for key, value in _gradients(net).items():
        torch.testing.assert_close(value, expected[key], msg=key)


@pytest.mark.parametrize("name", sorted(GRAM_RULES))
def test_a_shared_representation_steps_the_trunk_through_it(name):
    """On z = trunk(x): heads get their own gradients (GradNorm: weighted), the trunk
    gets Σ a_k ∇L_k by the chain rule — the same as combining the rows on z by hand."""
    net = _Net(3)
    net.zero_grad()
    features = net.trunk(net.inputs)
    step = GRAM_RULES[name]().backward(net.losses(features), [features])
    got = _gradients(net)
    features = net.trunk(net.inputs)
    losses = net.losses(features)
    rows = torch.stack(
        [torch.autograd.grad(loss, features, retain_graph=True)[0].flatten() for loss in losses]
    )
    torch.testing.assert_close(step.logs["shared_grad_norm"], (step.weights @ rows).norm())
    heads = step.weights if name == "gradnorm" else torch.ones(3, dtype=torch.float64)
    head_grads = torch.autograd.grad(
        heads @ losses, list(net.heads.parameters()), retain_graph=True
    )
    trunk_grads = torch.autograd.grad(
        features, list(net.trunk.parameters()), (step.weights @ rows).view_as(features)
    )
    for (key, _), value in zip(net.heads.named_parameters(), head_grads, strict=True):
        torch.testing.assert_close(got[f"heads.{key}"], value)
    for (key, _), value in zip(net.trunk.named_parameters(), trunk_grads, strict=True):
        torch.testing.assert_close(got[f"trunk.{key}"], value)


def test_imtl_gives_an_objective_without_gradient_no_share():
    rows = torch.cat([_rows(2, seed=6), torch.zeros(1, 12, dtype=torch.float64)])
    alpha = impartial_coefficients(rows @ rows.T)
    assert float(alpha[2]) == 0.0
    torch.testing.assert_close(alpha[:2], impartial_coefficients(rows[:2] @ rows[:2].T))
    assert float((alpha @ rows).norm()) > 0


def test_gradnorm_refuses_non_positive_losses():
    rule = GradNorm(2)
    gram = torch.eye(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="GradNorm needs positive losses"):
        rule.coefficients(gram, torch.tensor([1.0, -0.5], dtype=torch.float64))


def test_cagrad_with_a_large_radius_stays_finite_when_the_hull_holds_zero():
    rows = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    weights, _ = CAGrad(3, c=2.0).coefficients(rows @ rows.T, torch.ones(3, dtype=torch.float64))
    assert bool(torch.isfinite(weights).all())
    assert float((weights @ rows).norm()) < 10
