"""The ``ew`` method: the engine's adapter for :class:`~twcore_method_ew.rule.EqualWeighting`."""

from __future__ import annotations

from dataclasses import dataclass

from twcore.contract.method import MethodContext
from twcore.contract.options import option
from twcore.contract.spec import TaskSpec
from twcore.contract.weighting_method import WeightingMethod
from twcore_method_ew.rule import EqualWeighting


@dataclass
class EqualWeightingConfig:
    objectives: list[str] = option(
        default_factory=list,
        help="objectives to train on, equally weighted (default: all); 'main' names the main "
        "objective, so [main] is main-only training",
    )


class EqualWeightingMethod(WeightingMethod):
    """Mean of the selected objectives; the others get weight 0."""

    Config = EqualWeightingConfig

    def build_rule(self, config: EqualWeightingConfig, ctx: MethodContext) -> EqualWeighting:
        return EqualWeighting(
            ctx.spec.num_objectives, selected_indices(config.objectives, ctx.spec)
        )


def selected_indices(selected: list[str], spec: TaskSpec) -> list[int]:
    """The indices of the named objectives (``main`` names the main one); ValueError for a name
    that is not an objective of the task."""
    names = list(spec.objective_names)
    main = spec.main_objective
    indices = []
    for name in selected:
        if name == "main" and name not in names:
            if main is None:
                raise ValueError("objectives names 'main' but the task has no main objective")
            name = main.name
        if name not in names:
            raise ValueError(
                f"objectives names '{name}', which is not an objective of the task; "
                f"objectives: {', '.join(names)}"
            )
        indices.append(names.index(name))
    return indices
