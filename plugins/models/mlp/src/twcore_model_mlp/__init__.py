"""A multilayer perceptron with a shared trunk and one linear head per task head."""

from twcore_model_mlp.model import MLP, MLPConfig

__all__ = ["MLP", "MLPConfig"]
