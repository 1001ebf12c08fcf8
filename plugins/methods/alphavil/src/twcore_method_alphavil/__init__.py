"""αVIL (Kourdis, Gordon-Hall, Gorinski): task weights from task-specific parameter updates.

:class:`AlphaVIL` is the rule for any training loop; :class:`AlphaVILMethod` its engine adapter
(the ``alphavil`` plugin)."""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports

if TYPE_CHECKING:
    from twcore_method_alphavil.method import AlphaVILConfig, AlphaVILMethod
    from twcore_method_alphavil.rule import AlphaVIL

__all__ = ["AlphaVIL", "AlphaVILConfig", "AlphaVILMethod"]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
