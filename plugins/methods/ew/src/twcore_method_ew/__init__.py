"""Equal weighting: the baseline every learned weighting is compared with.

:class:`EqualWeighting` is the rule for any training loop; :class:`EqualWeightingMethod` its
engine adapter (the ``ew`` plugin)."""

from twcore_method_ew.method import EqualWeightingConfig, EqualWeightingMethod
from twcore_method_ew.rule import EqualWeighting

__all__ = ["EqualWeighting", "EqualWeightingConfig", "EqualWeightingMethod"]
