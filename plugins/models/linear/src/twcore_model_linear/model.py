"""``linear``: flattened input -> one ``nn.Linear`` per head; no hidden layer, no shared weights."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from twcore.contract.model import Model, flat_input_size
from twcore.contract.options import option
from twcore.contract.spec import TaskSpec


@dataclass
class LinearConfig:
    bias: bool = option(True, help="whether each head has a bias (intercept)")


class Linear(Model):
    """Trunk ``Flatten`` (no parameters), heads ``nn.Linear(flat_input_size, head.size)``.

    Only the example's own dims are flattened, so inputs ``[*lead, *input_shape]`` give outputs
    ``[*lead, head.size]``: on a per-item decision task this is one line ŷ = a·x + b shared by
    all items. It has no shared parameters, so every parameter belongs to one head.
    """

    Config = LinearConfig

    def __init__(self, config: LinearConfig, spec: TaskSpec) -> None:
        super().__init__(config, spec)
        self.trunk = nn.Flatten(start_dim=-len(spec.input_shape))
        width = flat_input_size(spec)
        self.heads = nn.ModuleDict(
            {head.name: nn.Linear(width, head.size, bias=config.bias) for head in spec.heads}
        )
