"""Group DRO (Sagawa, Koh, Hashimoto, Liang 2020) over a task's objectives.

:class:`GroupDRO` is the rule for any training loop; :class:`GroupDROMethod` its engine adapter
(the ``group-dro`` plugin)."""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports

if TYPE_CHECKING:
    from twcore_method_group_dro.method import GroupDROConfig, GroupDROMethod
    from twcore_method_group_dro.rule import GroupDRO

__all__ = ["GroupDRO", "GroupDROConfig", "GroupDROMethod"]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
