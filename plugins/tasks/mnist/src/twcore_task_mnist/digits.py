"""``mnist``: classify the real MNIST digits, one objective."""

from __future__ import annotations

from dataclasses import dataclass

from twcore.contract.batch import Batch
from twcore.contract.spec import ObjectiveKind, TaskSpec, single_objective_spec
from twcore.contract.task import TensorTask
from twcore_task_mnist.source import SPLITS, SplitConfig, load_mnist, split_indices


@dataclass
class MnistConfig(SplitConfig):
    pass


class Mnist(TensorTask):
    """Inputs ``(1, 28, 28)`` in [0, 1]; objective ``digit`` (10 classes); primary ``acc``."""

    Config = MnistConfig

    def build_spec(self) -> TaskSpec:
        return single_objective_spec((1, 28, 28), "digit", 10, ObjectiveKind.CLASSIFICATION)

    def build_splits(self) -> dict[str, Batch]:
        images, labels = load_mnist()
        indices = split_indices(self.config)
        return {
            name: Batch(inputs=images[indices[name]], targets={"digit": labels[indices[name]]})
            for name in SPLITS
        }
