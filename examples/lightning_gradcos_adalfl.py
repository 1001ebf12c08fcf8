"""GradCos and AdaLFL inside PyTorch Lightning (manual optimisation: the rules write the
gradients and take the meta-step themselves), on the digits two-task problem.

    python examples/lightning_gradcos_adalfl.py [--epochs 3]
"""

import argparse

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset
from twcore_method_adalfl import AdaLFL, LearnedObjective
from twcore_method_gradcos import GradCos
from two_tasks import TwoHeads, accuracy, digits, losses

from twcore.contract import Batch, ObjectiveKind


class WithGradCos(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model, self.rule = TwoHeads(), GradCos(2, main=0)

    def training_step(self, batch, batch_index):
        optimizer = self.optimizers()
        optimizer.zero_grad()
        step = self.rule.backward(losses(self.model, *batch), list(self.model.trunk.parameters()))
        optimizer.step()
        self.log("aux_weight", step.weights[1])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class WithAdaLFL(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model = torch.nn.Sequential(TwoHeads().trunk, torch.nn.Linear(64, 10))
        self.rule = AdaLFL([LearnedObjective(ObjectiveKind.CLASSIFICATION)], one_step_late=True)

    def training_step(self, batch, batch_index):
        x, y = batch
        optimizer = self.optimizers().optimizer  # the torch optimiser Lightning wraps
        base, _ = self.rule.step(self.model, optimizer, Batch(inputs=x, targets={"y": y}))
        self.log("cross_entropy", base[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
epochs = parser.parse_args().epochs
data = digits()
loader = DataLoader(TensorDataset(*data["train"]), batch_size=64, shuffle=True)
for module in (WithGradCos(), WithAdaLFL()):
    torch.manual_seed(0)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, loader)
    print(f"{type(module).__name__}: test accuracy {accuracy(module.model, *data['test']):.3f}")
