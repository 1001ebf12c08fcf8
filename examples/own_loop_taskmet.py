"""TaskMet in a plain PyTorch loop: a diagonal metric over the two tasks' per-example losses,
learned so that the predictor trained on the metric-weighted loss does best on the main task's
validation loss (the implicit hypergradient through the predictor's training).

    python examples/own_loop_taskmet.py [--outer-steps 10]
"""

import argparse
import functools
import itertools

import torch
import torch.nn.functional as F
from twcore_method_taskmet import MetricNetwork, TaskMet
from two_tasks import TwoHeads, accuracy, batches, digits

parser = argparse.ArgumentParser()
parser.add_argument("--outer-steps", type=int, default=10)
outer_steps = parser.parse_args().outer_steps
data = digits()
torch.manual_seed(0)
model = TwoHeads()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
rule = TaskMet(MetricNetwork(64, 2, "diagonal", 32, 0.01), outer_lr=1e-2)
train, val = batches(*data["train"]), batches(*data["val"], seed=1)


def per_example(x, y):
    """[B, 2]: each task's per-example cross-entropy (the metric weighs the two)."""
    main, aux = model(x)
    return torch.stack(
        [F.cross_entropy(main, y, reduction="none"), F.cross_entropy(aux, y % 2, reduction="none")],
        dim=1,
    )


def train_inner(steps):
    for x, y in itertools.islice(train, steps):
        optimizer.zero_grad()
        rule.metric_at(x).weigh(per_example(x, y)).mean().backward()
        optimizer.step()


def inner_loss():
    x, y = next(train)  # the hypergradient's inner objective, with its graph to φ
    return rule.metric_at(x, trainable=True).weigh(per_example(x, y)).mean()


def task_loss():
    x, y = next(val)  # the downstream loss: the main task on validation data
    return F.cross_entropy(model(x)[0], y)


for outer in range(outer_steps):
    inner_steps = 200 if outer == 0 else 50  # a long first fit, then warm-started refits
    logs = rule.outer_step(
        train_inner=functools.partial(train_inner, inner_steps),
        inner_loss=inner_loss,
        task_loss=task_loss,
        predictor=list(model.parameters()),
    )
weights = rule.metric_at(data["val"][0]).diagonal_entries().mean(0).tolist()
print(f"last task loss {logs['task_loss']:.3f}, mean metric weights {weights}")
print(f"TaskMet: test accuracy {accuracy(model, *data['test']):.3f}")
