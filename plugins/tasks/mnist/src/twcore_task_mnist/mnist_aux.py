"""``mnist-aux``: a main digit task plus auxiliary tasks whose usefulness is known.

- ``helpful``: the digit modulo 5 (a deterministic function of the main label: learning it is
  learning half of the main task).
- ``unrelated``: whether the digit's horizontal centre of mass lies right of the median of its
  own class (computed on the source digits). Learnable from the image, but balanced 50/50 within
  every class, so independent of the main label by construction.
- ``harmful``: a random label in 0..9 drawn per example from ``data_seed``, independent of the
  image: the network can only memorise it, which competes with the main task for capacity.

``main_labels`` makes the main task's labels scarce: only that many training images keep their
digit, while the auxiliaries keep their labels on every training image (auxiliaries drawn from
more data than the target, the setting auxiliary losses are for). The main objective's loss is
then the cross-entropy on the labelled images divided by their fraction (an unbiased estimate
of the loss over them, zero on the others); validation and test are fully labelled. Methods
that need a base-loss objective (AdaLFL) are refused on it, since its main objective is then
``custom``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.metrics import Direction
from twcore.contract.options import option
from twcore.contract.spec import Capability, HeadSpec, ObjectiveKind, ObjectiveSpec, Role, TaskSpec
from twcore.contract.task import TensorTask
from twcore_task_mnist.evaluation import classification_directions, masked_classification_metrics
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
    main_labels: int = option(
        0,
        ge=0,
        help="training digits that keep their main label (0: all); the auxiliaries keep "
        "theirs on every training digit",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        # `choices` checks each name; that none repeats is no per-element constraint.
        if len(set(self.auxiliaries)) != len(self.auxiliaries):
            raise ValueError(
                f"auxiliaries={list(self.auxiliaries)} repeats a name; list each auxiliary once"
            )
        if self.main_labels > self.train_size:
            raise ValueError(
                f"main_labels={self.main_labels} exceeds train_size={self.train_size}; give at "
                "most train_size (0: every training digit)"
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


MAIN_WEIGHT = "digit_weight"
"""The training target that weights each image's main loss when main labels are scarce."""


class MnistAux(TensorTask):
    """Main objective ``digit`` (10 classes) plus the chosen auxiliaries (see module docstring)."""

    Config = MnistAuxConfig

    @property
    def scarce(self) -> bool:
        """Whether only some training digits keep their main label."""
        return 0 < self.config.main_labels < self.config.train_size

    def build_spec(self) -> TaskSpec:
        kind = ObjectiveKind.CLASSIFICATION
        main_kind = ObjectiveKind.CUSTOM if self.scarce else kind
        objectives = [
            ObjectiveSpec("digit", head="digit", kind=main_kind, role=Role.MAIN, target="digit")
        ]
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
            if self.scarce:
                targets.update(self._main_labels(targets["digit"], training=name == "train"))
            splits[name] = Batch(inputs=images[index], targets=targets)
        assert set(splits) == set(SPLITS)
        return splits

    def _main_labels(self, digits: Tensor, *, training: bool) -> dict[str, Tensor]:
        """The main labels and their loss weights: in training, ``main_labels`` digits chosen by
        ``data_seed`` keep theirs with weight N / main_labels and the others get -1 and weight
        0; elsewhere every digit keeps its label with weight 1."""
        if not training:
            return {"digit": digits, MAIN_WEIGHT: torch.ones(len(digits))}
        generator = torch.Generator().manual_seed(self.config.data_seed + 4)
        kept = torch.zeros(len(digits), dtype=torch.bool)
        kept[torch.randperm(len(digits), generator=generator)[: self.config.main_labels]] = True
        weight = kept.float() * (len(digits) / self.config.main_labels)
        return {
            "digit": torch.where(kept, digits, torch.full_like(digits, -1)),
            MAIN_WEIGHT: weight,
        }

    def custom_loss(
        self, objective: ObjectiveSpec, outputs: Mapping[str, Tensor], batch: Batch
    ) -> Tensor:
        """The main objective with scarce labels: cross-entropy × the image's weight; [B]."""
        labels = batch.targets[objective.target]
        loss = F.cross_entropy(outputs[objective.head], labels, ignore_index=-1, reduction="none")
        return loss * batch.targets[MAIN_WEIGHT]

    @property
    def metric_directions(self) -> dict[str, Direction]:
        """The supervised metrics, the main objective's accuracy included when it is custom."""
        return dict(classification_directions(self.spec))

    def evaluate(
        self, model: torch.nn.Module, split: str, *, device: torch.device, batch_size: int
    ) -> dict[str, float]:
        """Loss and accuracy of every objective (all are classifications; the main one is
        ``custom`` only for its training weights)."""
        if not self.scarce:
            return super().evaluate(model, split, device=device, batch_size=batch_size)
        return masked_classification_metrics(
            self, model, split, device=device, batch_size=batch_size
        )
