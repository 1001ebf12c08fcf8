"""A LeNet-style convolutional model for image tasks."""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports

if TYPE_CHECKING:
    from twcore_model_cnn.model import CNN, CNNConfig

__all__ = ["CNN", "CNNConfig"]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
