"""``ldro-points``: L-DRO's synthetic setting — tasks are points in 2-D.

Task k's loss is the squared distance ||θ − p_k||² of a 2-D parameter θ to its point. One
outlier sits at (1, 0) (objective ``outlier``); the other points (``point0`` …) cluster around
(−1, 0) with seeded jitter. A forbidden disc of radius 1.25 is centred at (0, 0), between the
cluster and the outlier. Both lie inside the disc, so the unconstrained optima are forbidden and
the constrained ones are on the circle: the average-loss (ERM) optimum is the circle point nearest
the points' mean, ≈ (−1.25, 0), where the outlier's loss is ≈ 5.06; the worst-case (DRO) optimum
is ≈ (0, ±1.25), where every loss is ≈ 1 + 1.25² = 2.56 (2.8 with the default jitter) but the
cluster pays for it — a clean trade-off between average and worst-case loss.

How θ comes from a model: the input is a constant (one feature equal to 1) and θ = start + the
model's ``theta`` head output, so any model works (with ``model=linear`` θ is a free parameter;
θ starts at ``start`` plus the fresh model's output: keep ``start`` well outside the disc). The
disc is enforced by a smooth exterior penalty added to every task's loss, strength · relu(r² −
||θ − c||²)², which is zero outside the disc, grows quadratically inside, and pushes θ outward
along the radius. A penalty (not a projection) because it needs no access to the model's
parameters and keeps every method's gradient arithmetic unchanged; the equilibrium penetration
is ~1e-3 at the default strength (reported as ``constraint_violation``).

Evaluation reports ``theta_x``, ``theta_y``, ``loss/<task>`` (squared distance, no penalty),
``avg_loss``, ``worst_loss`` and ``constraint_violation``; with ``eval_every=1`` a run's
``metrics.jsonl`` is θ's trajectory, read back by :func:`read_trajectory`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.metrics import Direction, supervised_metric_directions, supervised_metrics
from twcore.contract.options import option
from twcore.contract.spec import Capability, HeadSpec, ObjectiveKind, ObjectiveSpec, Role, TaskSpec
from twcore.contract.task import TensorTask

EXAMPLES_PER_SPLIT = 64


@dataclass
class LdroPointsConfig:
    cluster_size: int = option(9, ge=1, help="number of task points clustered near cluster_center")
    cluster_center: list[float] = option(
        default_factory=lambda: [-1.0, 0.0], help="centre of the clustered points"
    )
    jitter: float = option(
        0.1, ge=0, help="std of the seeded Gaussian jitter of the cluster points"
    )
    outlier: list[float] = option(
        default_factory=lambda: [1.0, 0.0], help="the outlier task's point"
    )
    disc_center: list[float] = option(
        default_factory=lambda: [0.0, 0.0], help="centre of the forbidden disc"
    )
    disc_radius: float = option(1.25, ge=0, help="radius of the forbidden disc (0: no disc)")
    barrier: float = option(100.0, ge=0, help="strength of the penalty inside the disc")
    start: list[float] = option(
        default_factory=lambda: [0.0, 2.0], help="θ when the model outputs 0 (outside the disc)"
    )
    data_seed: int = option(0, help="seed of the cluster's jitter")

    def __post_init__(self) -> None:
        # A list's length is no declarable constraint (only that it is not empty).
        for key in ("cluster_center", "outlier", "disc_center", "start"):
            if len(getattr(self, key)) != 2:
                raise ValueError(f"{key}={list(getattr(self, key))} must be a 2-D point")
        if math.dist(self.start, self.disc_center) <= self.disc_radius:
            raise ValueError(
                f"start={list(self.start)} lies inside the forbidden disc (centre "
                f"{list(self.disc_center)}, radius {self.disc_radius}); start outside it"
            )


def task_points(config: LdroPointsConfig) -> Tensor:
    """Points [K, 2]: the cluster (``point0`` …) then the outlier (last)."""
    generator = torch.Generator().manual_seed(config.data_seed)
    cluster = torch.tensor(config.cluster_center) + config.jitter * torch.randn(
        config.cluster_size, 2, generator=generator
    )
    return torch.cat([cluster, torch.tensor([config.outlier])])


def disc_penalty(theta: Tensor, center: Tensor, radius: float, strength: float) -> Tensor:
    """strength · relu(r² − ||θ − c||²)² for θ [..., 2]; zero outside the disc."""
    inside = (radius**2 - (theta - center).square().sum(dim=-1)).clamp_min(0)
    return strength * inside.square()


class LdroPoints(TensorTask):
    """Squared-distance tasks around a forbidden disc (see the module docstring)."""

    Config = LdroPointsConfig

    @property
    def objective_names(self) -> list[str]:
        return [f"point{k}" for k in range(self.config.cluster_size)] + ["outlier"]

    def build_spec(self) -> TaskSpec:
        return TaskSpec(
            input_shape=(1,),
            heads=(HeadSpec("theta", 2),),
            objectives=tuple(
                ObjectiveSpec(name, head="theta", kind=ObjectiveKind.CUSTOM, role=Role.PEER)
                for name in self.objective_names
            ),
            capabilities=frozenset({Capability.VALIDATION}),
            primary_metric="worst_loss",
            primary_mode="min",
            summary_metrics=("worst_loss", "avg_loss", "theta_x", "theta_y"),
        )

    def build_splits(self) -> dict[str, Batch]:
        constant = Batch(inputs=torch.ones(EXAMPLES_PER_SPLIT, 1), targets={})
        return {"train": constant, "val": constant, "test": constant}

    @property
    def points(self) -> Tensor:
        return task_points(self.config)

    def theta(self, outputs: Mapping[str, Tensor]) -> Tensor:
        """θ [B, 2] = start + the ``theta`` head's output."""
        head = outputs["theta"]
        return head + torch.tensor(self.config.start, dtype=head.dtype, device=head.device)

    def objective_losses(self, outputs: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        theta = self.theta(outputs)
        points = self.points.to(theta)
        distances = (theta[:, None, :] - points[None]).square().sum(dim=-1)  # [B, K]
        penalty = disc_penalty(
            theta,
            points.new_tensor(self.config.disc_center),
            self.config.disc_radius,
            self.config.barrier,
        )
        losses = distances + penalty[:, None]
        return {name: losses[:, k] for k, name in enumerate(self.objective_names)}

    @property
    def metric_directions(self) -> dict[str, Direction]:
        """The distances (``loss/point*``, ``avg_loss``, ``worst_loss``: lower is better), θ's
        coordinates (reported, not scored) and how far θ is inside the disc (lower is better)."""
        return {
            **supervised_metric_directions(self.spec),
            "theta_x": "none",
            "theta_y": "none",
            "constraint_violation": "min",
        }

    @torch.no_grad()
    def evaluate(
        self, model: torch.nn.Module, split: str, *, device: torch.device, batch_size: int
    ) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:
            theta = self.theta(model(self.split(split).inputs[:1].to(device)))[0].double().cpu()
        finally:
            model.train(was_training)
        distances = (theta - self.points.double()).square().sum(dim=-1).tolist()
        metrics = supervised_metrics(
            self.spec, dict(zip(self.objective_names, distances, strict=True)), {}, {}
        )
        depth = self.config.disc_radius - float(
            (theta - torch.tensor(self.config.disc_center, dtype=torch.float64)).norm()
        )
        metrics.update(
            theta_x=float(theta[0]), theta_y=float(theta[1]), constraint_violation=max(depth, 0.0)
        )
        return metrics


def read_trajectory(run_dir: str | Path, split: str = "val") -> Tensor:
    """θ at every evaluation of a run, [T, 2], from its ``metrics.jsonl`` (in step order)."""
    points: dict[int, tuple[float, float]] = {}
    with open(Path(run_dir) / "metrics.jsonl") as lines:
        for line in lines:
            record = json.loads(line)
            if f"{split}/theta_x" in record:
                points[record["step"]] = (record[f"{split}/theta_x"], record[f"{split}/theta_y"])
    return torch.tensor([points[step] for step in sorted(points)], dtype=torch.float64)
