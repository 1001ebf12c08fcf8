"""The ``group-dro`` method: the engine's adapter for
:class:`~twcore_method_group_dro.rule.GroupDRO`."""

from __future__ import annotations

from dataclasses import dataclass

from twcore.contract.method import MethodContext
from twcore.contract.options import option
from twcore.contract.spec import Requirements
from twcore.contract.weighting_method import WeightingMethod
from twcore_method_group_dro.rule import GroupDRO


@dataclass
class GroupDROConfig:
    step_size: float = option(0.01, gt=0, help="η, step size of the exponentiated update of q")


class GroupDROMethod(WeightingMethod):
    """Weights q on the simplex, moved towards the objectives with the largest losses."""

    Config = GroupDROConfig
    requirements = Requirements(min_objectives=2)

    def build_rule(self, config: GroupDROConfig, ctx: MethodContext) -> GroupDRO:
        return GroupDRO(ctx.spec.num_objectives, config.step_size)
