"""A linear model: one affine map per head on the flattened input."""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports

if TYPE_CHECKING:
    from twcore_model_linear.model import Linear, LinearConfig

__all__ = ["Linear", "LinearConfig"]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
