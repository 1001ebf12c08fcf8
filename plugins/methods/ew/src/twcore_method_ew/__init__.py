"""Equal weighting: the baseline every learned weighting is compared with.

:class:`EqualWeighting` is the rule for any training loop; :class:`EqualWeightingMethod` its
engine adapter (the ``ew`` plugin)."""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports

if TYPE_CHECKING:
    from twcore_method_ew.method import EqualWeightingConfig, EqualWeightingMethod
    from twcore_method_ew.rule import EqualWeighting

__all__ = ["EqualWeighting", "EqualWeightingConfig", "EqualWeightingMethod"]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
