"""Group DRO (Sagawa, Koh, Hashimoto, Liang 2020) over a task's objectives.

:class:`GroupDRO` is the rule for any training loop; :class:`GroupDROMethod` its engine adapter
(the ``group-dro`` plugin)."""

from twcore_method_group_dro.method import GroupDROConfig, GroupDROMethod
from twcore_method_group_dro.rule import GroupDRO

__all__ = ["GroupDRO", "GroupDROConfig", "GroupDROMethod"]
