"""A multilayer perceptron with a shared trunk and one linear head per task head."""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports

if TYPE_CHECKING:
    from twcore_model_mlp.model import MLP, MLPConfig

__all__ = ["MLP", "MLPConfig"]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
