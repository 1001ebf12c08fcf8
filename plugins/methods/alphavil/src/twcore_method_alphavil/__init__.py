"""αVIL (Kourdis, Gordon-Hall, Gorinski): task weights from task-specific parameter updates.

:class:`AlphaVIL` is the rule for any training loop; :class:`AlphaVILMethod` its engine adapter
(the ``alphavil`` plugin)."""

from twcore_method_alphavil.method import AlphaVILConfig, AlphaVILMethod
from twcore_method_alphavil.rule import AlphaVIL

__all__ = ["AlphaVIL", "AlphaVILConfig", "AlphaVILMethod"]
