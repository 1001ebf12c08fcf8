"""Four per-step weightings in a plain PyTorch loop: equal weighting, GradCos, L-DRO and group
DRO, each a rule from its method plugin, on the digits two-task problem.

    python examples/own_loop_weightings.py [--steps 300]
"""

import argparse
import itertools

import torch
from twcore_method_ew import EqualWeighting
from twcore_method_gradcos import GradCos
from twcore_method_group_dro import GroupDRO
from twcore_method_ldro import LookaheadDRO
from two_tasks import TwoHeads, accuracy, batches, digits, losses

RULES = {
    "equal weighting": lambda: EqualWeighting(2),
    "GradCos": lambda: GradCos(2, main=0),
    "L-DRO": lambda: LookaheadDRO(2, step_size=0.01, interaction_every=10),
    "group DRO": lambda: GroupDRO(2, step_size=0.01),
}

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=300)
steps = parser.parse_args().steps
data = digits()
for name, make_rule in RULES.items():
    torch.manual_seed(0)
    model, rule = TwoHeads(), make_rule()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for x, y in itertools.islice(batches(*data["train"]), steps):
        optimizer.zero_grad()
        step = rule.backward(losses(model, x, y), shared=list(model.trunk.parameters()))
        optimizer.step()
    weights = ", ".join(f"{w:.2f}" for w in step.weights.tolist())
    print(f"{name}: test accuracy {accuracy(model, *data['test']):.3f} (last weights {weights})")
