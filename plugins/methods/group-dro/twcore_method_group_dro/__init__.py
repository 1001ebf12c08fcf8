"""Group DRO (Sagawa, Koh, Hashimoto, Liang 2020) over a task's objectives."""

from twcore_method_group_dro.method import GroupDRO, GroupDROConfig

__all__ = ["GroupDRO", "GroupDROConfig"]
