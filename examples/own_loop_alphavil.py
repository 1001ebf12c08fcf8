"""αVIL in a plain PyTorch loop: weighted steps every step, the weights and shared parameters
moved from task-specific updates after every epoch, on the digits two-task problem.

    python examples/own_loop_alphavil.py [--epochs 4]
"""

import argparse
import itertools

import torch
import torch.nn.functional as F
from torch.func import functional_call
from twcore_method_alphavil import AlphaVIL
from two_tasks import TwoHeads, accuracy, batches, digits, losses

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=4)
epochs = parser.parse_args().epochs
data = digits()
torch.manual_seed(0)
model, rule = TwoHeads(), AlphaVIL(2, main=0)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
train, steps_per_epoch = batches(*data["train"]), len(data["train"][1]) // 64
shared = [f"trunk.{name}" for name, _ in model.trunk.named_parameters()]


def loss_at(params, batch, task):
    """Task `task`'s loss with the model's parameters replaced by `params`."""
    x, y = batch
    main, aux = functional_call(model, params, (x,))
    return F.cross_entropy(main, y) if task == 0 else F.cross_entropy(aux, y % 2)


for epoch in range(epochs):
    for x, y in itertools.islice(train, steps_per_epoch):
        optimizer.zero_grad()
        rule.backward(losses(model, x, y))
        optimizer.step()
    logs = rule.epoch_update(
        model,
        shared,
        batches=train,
        task_loss=loss_at,
        dev_batch=data["val"],
        steps=rule.copy_steps(steps_per_epoch),
    )
    print(
        f"epoch {epoch + 1}: weights {rule.weights.tolist()}, alpha {list(logs['alpha'].values())}"
    )
print(f"αVIL: test accuracy {accuracy(model, *data['test']):.3f}")
