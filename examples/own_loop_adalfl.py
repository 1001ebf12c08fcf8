"""AdaLFL in a plain PyTorch loop: a learned loss replaces cross-entropy on the main task and is
meta-learned online, every step, from the base loss after the step.

    python examples/own_loop_adalfl.py [--steps 300] [--one-step-late]
"""

import argparse
import itertools

import torch
from twcore_method_adalfl import AdaLFL, LearnedObjective
from two_tasks import TwoHeads, accuracy, batches, digits

from twcore.contract import Batch, ObjectiveKind

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--one-step-late", action="store_true", help="the fast form of the meta-step")
options = parser.parse_args()
data = digits()
torch.manual_seed(0)
main_only = torch.nn.Sequential(TwoHeads().trunk, torch.nn.Linear(64, 10))  # a one-head model
optimizer = torch.optim.SGD(main_only.parameters(), lr=0.05)
rule = AdaLFL(
    [LearnedObjective(ObjectiveKind.CLASSIFICATION)],  # one output tensor, targets under "y"
    meta_lr=1e-3,
    one_step_late=options.one_step_late,
)


def as_batches(stream):
    return (Batch(inputs=x, targets={"y": y}) for x, y in stream)


train, meta = as_batches(batches(*data["train"])), as_batches(batches(*data["val"], seed=1))
for batch in itertools.islice(train, options.steps):
    base, logs = rule.step(main_only, optimizer, batch, meta_batches=meta)
print(f"last cross-entropy {float(base[0]):.3f}, learned loss {float(logs['learned_loss']):.3f}")
print(f"AdaLFL: test accuracy {accuracy(main_only, *data['test']):.3f}")
