"""A linear model: one affine map per head on the flattened input."""

from twcore_model_linear.model import Linear, LinearConfig

__all__ = ["Linear", "LinearConfig"]
