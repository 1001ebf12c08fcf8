"""Evaluation metrics with stable names, shared by tasks.

Names (``split/`` is prefixed by the engine when logging, e.g. ``test/avg_acc``):

- ``loss/<objective>``: mean per-example loss of each objective.
- ``acc/<objective>``: accuracy of each classification objective.
- ``mse/<objective>``: mean squared error of each regression objective.
- ``avg_loss``, ``worst_loss``: mean and maximum of the per-objective losses.
- ``avg_acc``, ``worst_acc``: mean and minimum accuracy over classification objectives.
- ``main_loss``, ``main_acc``, ``main_mse``: the main objective's metrics, when a task has one.
- ``loss``, ``acc``, ``mse``: the same for single-objective tasks.
"""

from __future__ import annotations

from collections.abc import Mapping

from twcore.contract.spec import ObjectiveKind, TaskSpec


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
