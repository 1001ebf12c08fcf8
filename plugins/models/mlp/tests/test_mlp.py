"""The MLP model: conformance on the reference task and on the toy multitask task."""

from __future__ import annotations

import pytest
import torch

from twcore.contract.errors import ConfigError
from twcore.testing import Harness, ModelConformance, registry_with
from twcore.testing.harness import resolve


class TestMLPConformance(ModelConformance):
    model = "mlp"


class TestMLPWithDropoutConformance(ModelConformance):
    model = "mlp"
    model_options = {"hidden": [8, 8, 8], "activation": "tanh", "dropout": 0.1}


class TestMLPWithoutHiddenLayersConformance(ModelConformance):
    model = "mlp"
    model_options = {"hidden": []}

    def test_every_parameter_is_shared_or_owned_by_one_head(self) -> None:
        model = self.harness().components.model
        assert model.shared_parameters() == []


def _model(**options):
    registry = registry_with([resolve("model", "mlp", "mlp")])
    base = {
        "method": "reference-method",
        "task": "reference-task",
        "model": "mlp",
        "wandb.enabled": False,
        "device": "cpu",
    }
    return Harness(registry, {**base, **options}).components.model


def test_layer_widths_follow_the_config():
    model = _model(**{"model.hidden": [5, 7]})
    linear = [m for m in model.trunk if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(6, 5), (5, 7)]
    assert {name: head.in_features for name, head in model.heads.items()} == {
        "main": 7,
        "aux": 7,
        "value": 7,
    }


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("model.activation", "sigmoidish", "model.activation=sigmoidish must be one of relu"),
        ("model.hidden", [4, 0], r"model.hidden=\[4,0\] holds 0: each element must be >= 1"),
        ("model.dropout", 1.0, "model.dropout=1.0 must be >= 0 and < 1"),
    ],
)
def test_bad_options_are_config_errors(key, value, message):
    with pytest.raises(ConfigError, match=message):
        _model(**{key: value})
