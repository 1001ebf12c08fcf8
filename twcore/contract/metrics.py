"""Evaluation metrics with stable names, shared by tasks.

Names (``split/`` is prefixed by the engine when logging, e.g. ``test/avg_acc``):

- ``loss/<objective>``: mean per-example loss of each objective.
- ``acc/<objective>``: accuracy of each classification objective.
- ``mse/<objective>``: mean squared error of each regression objective.
- ``avg_loss``, ``worst_loss``: mean and maximum of the per-objective losses.
- ``avg_acc``, ``worst_acc``: mean and minimum accuracy over classification objectives.
- ``main_loss``, ``main_acc``, ``main_mse``: the main objective's metrics, when a task has one.
- ``loss``, ``acc``, ``mse``: the same for single-objective tasks.

Every metric a task reports has a *direction* (:data:`DIRECTIONS`): ``max`` if higher is better,
``min`` if lower is better, ``none`` for a number that is reported but not scored (a coordinate,
an episode's length, a reference value). Tables mark the best row by it, ``keep_best`` and early
stopping select by it, and ``twcore tune`` optimises by it; nothing guesses it from a name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from twcore.contract.spec import ObjectiveKind, TaskSpec

Direction = Literal["max", "min", "none"]
DIRECTIONS: tuple[Direction, ...] = ("max", "min", "none")
"""``max``: higher is better; ``min``: lower is better; ``none``: reported, not scored."""

SUPERVISED_DIRECTIONS: dict[str, Direction] = {"loss": "min", "acc": "max", "mse": "min"}
"""The direction of each family of :func:`supervised_metrics` (``avg_loss``, ``loss/x`` and
``main_loss`` are all losses)."""


def supervised_metrics(
    spec: TaskSpec,
    mean_losses: Mapping[str, float],
    accuracies: Mapping[str, float],
    mean_squared_errors: Mapping[str, float],
) -> dict[str, float]:
    """Per-objective metrics plus the aggregates people compare (see module docstring)."""
    metrics: dict[str, float] = {}
    metrics.update({f"loss/{name}": value for name, value in mean_losses.items()})
    metrics.update({f"acc/{name}": value for name, value in accuracies.items()})
    metrics.update({f"mse/{name}": value for name, value in mean_squared_errors.items()})
    if mean_losses:
        metrics["avg_loss"] = sum(mean_losses.values()) / len(mean_losses)
        metrics["worst_loss"] = max(mean_losses.values())
    if accuracies:
        metrics["avg_acc"] = sum(accuracies.values()) / len(accuracies)
        metrics["worst_acc"] = min(accuracies.values())
    main = spec.main_objective
    named = {"loss": mean_losses, "acc": accuracies, "mse": mean_squared_errors}
    if main is not None:
        for metric, values in named.items():
            if main.name in values:
                metrics[f"main_{metric}"] = values[main.name]
    if spec.num_objectives == 1:
        only = spec.objectives[0].name
        for metric, values in named.items():
            if only in values:
                metrics[metric] = values[only]
    return metrics


def supervised_metric_names(spec: TaskSpec) -> tuple[str, ...]:
    """The names :func:`supervised_metrics` returns for `spec`'s objectives, in its order."""

    def of_kind(kind: ObjectiveKind) -> dict[str, float]:
        return {o.name: 0.0 for o in spec.objectives if o.kind is kind}

    names = supervised_metrics(
        spec,
        dict.fromkeys(spec.objective_names, 0.0),
        of_kind(ObjectiveKind.CLASSIFICATION),
        of_kind(ObjectiveKind.REGRESSION),
    )
    return tuple(names)


def supervised_metric_directions(spec: TaskSpec) -> dict[str, Direction]:
    """The direction of every name :func:`supervised_metric_names` returns, in its order."""
    return supervised_directions_of(supervised_metric_names(spec))


def supervised_directions_of(names: Iterable[str]) -> dict[str, Direction]:
    """The directions of supervised metric names (a task that reports the supervised metrics of
    more objectives than its spec has, e.g. accuracy of every task, declares them with this)."""
    return {name: SUPERVISED_DIRECTIONS[_family(name)] for name in names}


def _family(name: str) -> str:
    """``loss`` for ``loss/x``, ``avg_loss``, ``main_loss`` and ``loss`` (likewise acc, mse)."""
    return name.split("/", 1)[0].rsplit("_", 1)[-1]


def check_directions(directions: Mapping[str, str], owner: str) -> None:
    """ValueError naming the first metric whose direction is not one of :data:`DIRECTIONS`."""
    for name, direction in directions.items():
        if direction not in DIRECTIONS:
            raise ValueError(
                f"{owner}: metric '{name}' has direction {direction!r}; "
                f"valid: {', '.join(DIRECTIONS)}"
            )
