"""``mnist-aux``: a main digit task plus auxiliary tasks whose usefulness is known.

- ``helpful``: the digit modulo 5 (a deterministic function of the main label: learning it is
  learning half of the main task).
- ``unrelated``: whether the digit's horizontal centre of mass lies right of the median of its
  own class (computed on the source digits). Learnable from the image, but balanced 50/50 within
  every class, so independent of the main label by construction.
- ``harmful``: a random label in 0..9 drawn per example from ``data_seed``, independent of the
  image: the network can only memorise it, which competes with the main task for capacity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.options import option
from twcore.contract.spec import Capability, HeadSpec, ObjectiveKind, ObjectiveSpec, Role, TaskSpec
from twcore.contract.task import TensorTask
from twcore_task_mnist.source import SPLITS, SplitConfig, load_mnist, split_indices

AUXILIARIES = ("helpful", "unrelated", "harmful")
AUXILIARY_CLASSES = {"helpful": 5, "unrelated": 2, "harmful": 10}


@dataclass
class MnistAuxConfig(SplitConfig):
    auxiliaries: list[str] = option(
        default_factory=lambda: list(AUXILIARIES),
        choices=AUXILIARIES,
        help=f"auxiliary tasks present: any of {', '.join(AUXILIARIES)}",
    )
    # Redeclared for its default, so it repeats SplitConfig's constraint.
    train_size: int = option(1000, ge=1, help="training digits (small, so auxiliaries can matter)")

    def __post_init__(self) -> None:
        super().__post_init__()
        # `choices` checks each name; that none repeats is no per-element constraint.
        if len(set(self.auxiliaries)) != len(self.auxiliaries):
            raise ValueError(
                f"auxiliaries={list(self.auxiliaries)} repeats a name; list each auxiliary once"
            )


def centre_of_mass_column(images: Tensor) -> Tensor:
    """Horizontal centre of mass of images [N, 1, 28, 28]; [N]."""
    mass = images.sum(dim=(1, 2))  # [N, 28] ink per column
    return (mass * torch.arange(28.0)).sum(dim=1) / mass.sum(dim=1).clamp_min(1e-6)


def right_of_class_median(images: Tensor, digits: Tensor) -> Tensor:
    """1 where an image's centre of mass is right of its class's median, else 0; [N]."""
    column = centre_of_mass_column(images)
    medians = torch.stack([column[digits == d].median() for d in range(10)])
    return (column > medians[digits]).long()


class MnistAux(TensorTask):
    """Main objective ``digit`` (10 classes) plus the chosen auxiliaries (see module docstring)."""

    Config = MnistAuxConfig

    def build_spec(self) -> TaskSpec:
        kind = ObjectiveKind.CLASSIFICATION
        objectives = [ObjectiveSpec("digit", head="digit", kind=kind, role=Role.MAIN)]
        heads = [HeadSpec("digit", 10)]
        for name in self.config.auxiliaries:
            heads.append(HeadSpec(name, AUXILIARY_CLASSES[name]))
            objectives.append(ObjectiveSpec(name, head=name, kind=kind, role=Role.AUXILIARY))
        return TaskSpec(
            input_shape=(1, 28, 28),
            heads=tuple(heads),
            objectives=tuple(objectives),
            capabilities=frozenset({Capability.VALIDATION}),
            primary_metric="main_acc",
            primary_mode="max",
            summary_metrics=("main_acc", "main_loss", "avg_acc", "worst_acc"),
        )

    def build_splits(self) -> dict[str, Batch]:
        images, digits = load_mnist()
        labels = {
            "helpful": digits % 5,
            "unrelated": right_of_class_median(images, digits),
        }
        generator = torch.Generator().manual_seed(self.config.data_seed + 3)
        labels["harmful"] = torch.randint(10, digits.shape, generator=generator)
        splits = {}
        for name, index in split_indices(self.config).items():
            targets = {"digit": digits[index]}
            targets.update({aux: labels[aux][index] for aux in self.config.auxiliaries})
            splits[name] = Batch(inputs=images[index], targets=targets)
        assert set(splits) == set(SPLITS)
        return splits
