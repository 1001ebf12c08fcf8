"""ldro-points: closed-form losses, the disc penalty, and the documented constrained optima."""

from __future__ import annotations

import pytest
import torch
from twcore_task_synthetic.ldro_points import (
    LdroPointsConfig,
    disc_penalty,
    read_trajectory,
    task_points,
)

from twcore.contract.errors import ConfigError
from twcore.orchestration import api
from twcore.orchestration.config.compose import compose
from twcore.testing import Harness, TaskConformance, registry_with
from twcore.testing.harness import resolve


class TestLdroPointsConformance(TaskConformance):
    task = "ldro-points"

    def test_splits_share_no_examples(self) -> None:
        """Overridden: this task has no data — every split is the same constant input, so
        train, validation and test all evaluate the one parameter θ."""
        task = self.harness().components.task
        for split in ("val", "test"):
            assert torch.equal(task.split(split).inputs, task.split("train").inputs)


def _harness(**options):
    registry = registry_with(
        [
            resolve("task", "ldro-points", "ldro-points"),
            resolve("method", "ew", "ew"),
            resolve("model", "linear", "linear"),
        ]
    )
    base = {"method": "ew", "task": "ldro-points", "model": "linear", "wandb.enabled": False}
    return Harness(registry, {**base, "device": "cpu", **options})


def test_losses_are_squared_distances_outside_the_disc():
    task = _harness().components.task
    theta = torch.tensor([[0.3, 1.9], [-2.0, 0.5]])
    outputs = {"theta": theta - torch.tensor(task.config.start)}
    losses = task.objective_losses(outputs, task.split("train").index(slice(0, 2)))
    points = task_points(task.config)
    for k, name in enumerate(task.objective_names):
        torch.testing.assert_close(losses[name], (theta - points[k]).square().sum(dim=1))
    assert task.objective_names[-1] == "outlier"
    torch.testing.assert_close(points[-1], torch.tensor([1.0, 0.0]))
    assert (points[:-1] - torch.tensor([-1.0, 0.0])).norm(dim=1).max() < 0.5


def test_penalty_is_zero_outside_positive_inside_and_pushes_outward():
    center = torch.zeros(2)
    assert disc_penalty(torch.tensor([1.3, 0.0]), center, 1.25, 100.0) == 0
    theta = torch.tensor([0.3, 0.4], dtype=torch.float64, requires_grad=True)
    value = disc_penalty(theta, center.double(), 1.25, 100.0)
    assert value > 0
    (grad,) = torch.autograd.grad(value, theta)
    # Descent direction −grad points away from the centre (along +θ).
    assert torch.dot(-grad, theta.detach()) > 0
    # The gradient matches central finite differences.
    step = 1e-6
    for i in range(2):
        shift = torch.zeros(2, dtype=torch.float64)
        shift[i] = step
        numeric = (
            disc_penalty(theta.detach() + shift, center.double(), 1.25, 100.0)
            - disc_penalty(theta.detach() - shift, center.double(), 1.25, 100.0)
        ) / (2 * step)
        assert float(grad[i]) == pytest.approx(float(numeric), rel=1e-6)


def test_brute_force_confirms_the_documented_constrained_optima():
    points = task_points(LdroPointsConfig(jitter=0.0)).double()  # the closed-form layout
    axis = torch.linspace(-3, 3, 1201, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    allowed = grid[grid.norm(dim=1) >= 1.25]
    losses = (allowed[:, None, :] - points[None]).square().sum(dim=-1)
    erm = allowed[losses.mean(dim=1).argmin()]
    dro = allowed[losses.max(dim=1).values.argmin()]
    assert (erm - torch.tensor([-1.25, 0.0], dtype=torch.float64)).norm() < 0.1
    assert losses.mean(dim=1).min() < 1.0 and losses[losses.mean(dim=1).argmin()].max() > 4.5
    assert abs(float(dro[0])) < 0.15 and abs(abs(float(dro[1])) - 1.25) < 0.05
    assert losses.max(dim=1).values.min() == pytest.approx(1 + 1.25**2, abs=0.02)


def test_equal_weighting_reaches_the_constrained_average_optimum():
    harness = _harness(**{"optim.lr": 0.02, "batch_size": 8})
    harness.steps(600)
    task = harness.components.task
    metrics = task.evaluate(
        harness.components.model, "test", device=torch.device("cpu"), batch_size=8
    )
    points = task_points(task.config).double()
    mean = points.mean(dim=0)  # inside the disc: the optimum is the nearest boundary point
    expected = 1.25 * mean / mean.norm()
    reached = torch.tensor([metrics["theta_x"], metrics["theta_y"]], dtype=torch.float64)
    assert (reached - expected).norm() < 0.05
    assert metrics["constraint_violation"] < 0.01
    assert metrics["worst_loss"] == pytest.approx(metrics["loss/outlier"])


def test_read_trajectory_returns_theta_at_every_evaluation(tmp_path):
    result = api.run(
        [
            "task=ldro-points",
            "model=linear",
            "steps=6",
            "eval_every=1",
            "wandb.enabled=false",
            f"runs_root={tmp_path}",
        ]
    )
    trajectory = read_trajectory(result.run_dir)
    assert trajectory.shape[1] == 2 and len(trajectory) >= 5
    assert (trajectory.norm(dim=1) > 1.25).all()  # starts and stays outside the disc
    assert (trajectory[1:] - trajectory[:-1]).norm(dim=1).max() < 0.05  # one Adam step apart
    last = result.metrics["val"]
    assert trajectory[-1].tolist() == pytest.approx([last["theta_x"], last["theta_y"]])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("task.start", [0.0, 0.5], r"invalid: start=\[0\.0, 0\.5\] lies inside the forbidden disc"),
        (
            "task.outlier",
            [1.0],
            r"^task 'ldro-points' options are invalid: outlier=\[1\.0\] must be a 2-D",
        ),
        ("task.cluster_size", 0, r"^task\.cluster_size=0 must be >= 1$"),
    ],
)
def test_bad_options_are_config_errors(key, value, message):
    with pytest.raises(ConfigError, match=message):
        _harness(**{key: value}).components  # noqa: B018


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("task.jitter=-0.1", r"^task\.jitter=-0\.1 must be >= 0$"),
        ("task.disc_radius=-1", r"^task\.disc_radius=-1\.0 must be >= 0$"),
        ("task.barrier=inf", r"^task\.barrier=inf must be a finite number >= 0$"),
    ],
)
def test_the_composer_refuses_a_bad_option_naming_its_key(override, message):
    with pytest.raises(ConfigError, match=message):
        compose(["task=ldro-points", override])


def test_zero_jitter_radius_and_barrier_are_allowed():
    zeros = ["task.jitter=0", "task.disc_radius=0", "task.barrier=0"]
    options = compose(["task=ldro-points", *zeros]).sections["task"]
    assert (options.jitter, options.disc_radius, options.barrier) == (0.0, 0.0, 0.0)
