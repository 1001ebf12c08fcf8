"""``cnn``: LeNet-style trunk (conv → act → pool, twice, then a dense layer), linear heads.

Convolutions use 'same' padding and each block halves the spatial size with 2×2 max pooling
while it is at least 4 pixels, so 28×28 (MNIST) becomes 7×7 and 8×8 (sklearn digits) 2×2.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from twcore.contract.activations import activation_option, dropout_option, make_activation
from twcore.contract.model import Model
from twcore.contract.options import option
from twcore.contract.spec import TaskSpec


@dataclass
class CNNConfig:
    channels: list[int] = option(
        default_factory=lambda: [16, 32],
        ge=1,
        nonempty=True,
        help="output channels of the convolution blocks",
    )
    kernel_size: int = option(5, ge=1, help="odd convolution kernel size ('same' padding)")
    hidden: int = option(
        128, ge=0, help="width of the dense layer after the convolutions (0: none)"
    )
    activation: str = activation_option()
    dropout: float = dropout_option(where="before the heads")

    def __post_init__(self) -> None:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={self.kernel_size} must be odd ('same' padding)")


def image_shape(spec: TaskSpec) -> tuple[int, int, int]:
    """(channels, height, width) of the task's inputs; (H, W) counts as one channel."""
    shape = tuple(int(d) for d in spec.input_shape)
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3:
        return shape  # type: ignore[return-value]
    raise ValueError(
        f"model 'cnn' needs image inputs (C, H, W) or (H, W), but the task's input shape is "
        f"{shape}; use model=mlp for vector inputs"
    )


class ImageTrunk(nn.Module):
    """Convolution blocks and a dense layer; keeps any leading batch dims."""

    def __init__(self, config: CNNConfig, shape: tuple[int, int, int], input_dims: int) -> None:
        super().__init__()
        self.shape = shape
        self.input_dims = input_dims
        channels, height, width = shape
        layers: list[nn.Module] = []
        for out_channels in config.channels:
            layers += [
                nn.Conv2d(channels, out_channels, config.kernel_size, padding="same"),
                make_activation(config.activation),
            ]
            if min(height, width) >= 4:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            channels = out_channels
        layers.append(nn.Flatten())
        self.features_size = channels * height * width
        if config.hidden:
            layers += [
                nn.Linear(self.features_size, config.hidden),
                make_activation(config.activation),
            ]
            self.features_size = config.hidden
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
        self.layers = nn.Sequential(*layers)

    def forward(self, inputs: Tensor) -> Tensor:
        """Features [*lead, F] of images [*lead, *input_shape]."""
        lead = inputs.shape[: inputs.dim() - self.input_dims]
        features = self.layers(inputs.reshape(-1, *self.shape))
        return features.reshape(*lead, self.features_size)


class CNN(Model):
    """LeNet-style CNN: :class:`ImageTrunk` shared, one ``nn.Linear`` per head."""

    Config = CNNConfig

    def __init__(self, config: CNNConfig, spec: TaskSpec) -> None:
        super().__init__(config, spec)
        self.trunk = ImageTrunk(config, image_shape(spec), len(spec.input_shape))
        self.heads = nn.ModuleDict(
            {h.name: nn.Linear(self.trunk.features_size, h.size) for h in spec.heads}
        )
