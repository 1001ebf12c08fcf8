"""``mlp``: flattened input -> shared hidden layers (the trunk) -> one linear layer per head."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from twcore.contract.activations import activation_option, dropout_option, make_activation
from twcore.contract.model import Model, flat_input_size
from twcore.contract.options import option
from twcore.contract.spec import TaskSpec


@dataclass
class MLPConfig:
    hidden: list[int] = option(
        default_factory=lambda: [128, 128], ge=1, help="widths of the shared hidden layers"
    )
    activation: str = activation_option()
    dropout: float = dropout_option()


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
            layers += [nn.Linear(width, hidden), make_activation(config.activation)]
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            width = hidden
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({head.name: nn.Linear(width, head.size) for head in spec.heads})
