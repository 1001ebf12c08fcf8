"""A LeNet-style convolutional model for image tasks."""

from twcore_model_cnn.model import CNN, CNNConfig

__all__ = ["CNN", "CNNConfig"]
