"""Equal weighting: the baseline every learned weighting is compared with."""

from twcore_method_ew.method import EqualWeighting, EqualWeightingConfig

__all__ = ["EqualWeighting", "EqualWeightingConfig"]
