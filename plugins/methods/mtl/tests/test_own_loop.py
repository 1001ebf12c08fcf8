"""A plain PyTorch loop with a rule trains bit for bit as the engine's plugin does: the update
rule is written once (on the Gram path, the rows path and the trunk's output alike)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable

import pytest
import torch
from twcore_method_mtl import FAMO, MGDA, NashMTL, PCGrad, UncertaintyWeighting

from twcore.autodiff import GramRecorder
from twcore.contract.task import stack_objective_losses
from twcore.contract.weighting import Weighting
from twcore.testing.own_loop import assert_same_parameters, engine_parameters, plain_setup

STEPS = 12
RULES: dict[str, tuple[dict[str, object], Callable[[int], Weighting]]] = {
    "uw": ({}, lambda k: UncertaintyWeighting(k, lr=1e-3)),  # the run's optim.lr
    "mgda": ({"method.gradients": "gram"}, lambda k: MGDA(k)),
    "pcgrad": ({"method.gradients": "rows"}, lambda k: PCGrad(k, seed=3)),
    "nash-mtl": ({"method.interaction": "features"}, lambda k: NashMTL(k)),
    "famo": ({}, lambda k: FAMO(k)),
}


@pytest.mark.parametrize("name", sorted(RULES))
def test_a_plain_loop_with_the_rule_trains_exactly_as_the_engine(tmp_path, name):
    options, build = RULES[name]
    engine = engine_parameters(
        tmp_path / "engine", {"method": name, "steps": STEPS, "seed": 3, **options}
    )
    setup = plain_setup({"seed": 3})
    model, rule = setup.model, build(setup.spec.num_objectives)
    use_gram = options.get("method.gradients") == "gram"
    recorder = GramRecorder(setup.shared, model, cut=model.trunk) if use_gram else None
    for batch in itertools.islice(setup.stream, STEPS):
        setup.optimizer.zero_grad(set_to_none=True)
        if options.get("method.interaction") == "features":
            features = model.features(batch.inputs)
            outputs = model.predict_heads(features)
            losses = stack_objective_losses(setup.task, outputs, batch)
            rule.backward(losses, [features], params=model.parameters())
        else:
            with recorder or contextlib.nullcontext():
                losses = setup.losses(batch)
            extra = {"gram": recorder} if recorder is not None else {}
            rule.backward(losses, setup.shared, params=model.parameters(), **extra)
            if recorder is not None:
                recorder.clear()
        setup.optimizer.step()
        if isinstance(rule, FAMO):
            with torch.no_grad():
                rule.update(setup.losses(batch))
    assert_same_parameters(model, engine)
