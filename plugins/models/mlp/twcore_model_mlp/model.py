"""``mlp``: flattened input -> shared hidden layers (the trunk) -> one linear layer per head."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from twcore.config import option
from twcore.model import Model, flat_input_size
from twcore.spec import TaskSpec

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
}


@dataclass
class MLPConfig:
    hidden: list[int] = option(
        default_factory=lambda: [128, 128], help="widths of the shared hidden layers"
    )
    activation: str = option("relu", help="activation: relu, tanh, gelu, silu or elu")
    dropout: float = option(0.0, help="dropout probability after each hidden layer")

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"model.activation='{self.activation}' is not one of {', '.join(ACTIVATIONS)}"
            )
        if any(width < 1 for width in self.hidden):
            raise ValueError(f"model.hidden={list(self.hidden)} must hold positive widths")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout={self.dropout} must be in [0, 1)")


class MLP(Model):
    """Shared trunk ``Flatten -> [Linear -> activation -> Dropout] * len(hidden)``; heads are
    linear maps from the last hidden layer (from the input if ``hidden`` is empty).

    Inputs ``[*lead, *input_shape]`` give outputs ``[*lead, head.size]``."""

    Config = MLPConfig

    def __init__(self, config: MLPConfig, spec: TaskSpec) -> None:
        super().__init__(config, spec)
        # Flatten only the example's own dims: leading batch dims (e.g. items of a
        # decision instance, [B, n_items, F]) are kept, so the MLP applies per item.
        layers: list[nn.Module] = [nn.Flatten(start_dim=-len(spec.input_shape))]
        width = flat_input_size(spec)
        for hidden in config.hidden:
            layers += [nn.Linear(width, hidden), ACTIVATIONS[config.activation]()]
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            width = hidden
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({head.name: nn.Linear(width, head.size) for head in spec.heads})
