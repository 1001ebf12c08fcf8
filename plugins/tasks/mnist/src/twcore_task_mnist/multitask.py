"""``mnist-multitask``: many classification tasks over subsets of the digit classes.

The analogue of multitask CIFAR-100 (20 coarse classes, each a 5-way task over its fine
classes). Task t classifies the digits of its subset S_t (label = position of the digit in S_t);
every image is shown to every head, and task t's per-example loss is the cross-entropy on the
images whose digit is in S_t, zero elsewhere, divided by the training fraction p_t of such
images — so a batch mean is an unbiased estimate of task t's loss over its own images.
Evaluation counts only each task's own images.

The default subsets mix easy tasks (digits that look different), hard tasks (confusable digits:
3/5/8, 4/9/7, 1/7), overlapping tasks (4 of 5 digits shared) and exact duplicates (redundant
tasks, which bias the average metric — the case L-DRO's worst-case view is about).

Two options make chosen tasks harder in training only (validation and test stay clean):
``label_noise`` replaces a fraction of a task's training labels with a uniformly random class
of its subset (a task whose loss cannot fall to zero: the case where a worst-case weighting
that chases the current loss over-weights a task it cannot help), and ``rare_class_fraction``
keeps a task's labels for only that fraction of the training images of its subset's last
digit (a class-imbalanced task whose rare class its test accuracy still counts in full). On a
task with both, the noise draws from the labels left after thinning, so a few noisy labels
land on the rare class.
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

DEFAULT_SUBSETS: tuple[tuple[int, ...], ...] = (
    (0, 1, 2, 6, 7),  # easy: distinct shapes
    (0, 1, 4, 6, 8),  # easy
    (1, 2, 3, 6, 0),  # easy
    (0, 1, 7, 3, 6),  # easy
    (3, 5, 8, 9, 0),  # hard: 3/5/8 and 8/9 are confusable
    (4, 7, 9, 1, 2),  # hard: 4/9/7 and 1/7
    (3, 5, 8, 2, 7),  # hard
    (4, 9, 5, 3, 8),  # hardest: two confusable groups
    (2, 3, 5, 6, 8),  # medium
    (0, 2, 4, 6, 8),  # even digits
    (1, 3, 5, 7, 9),  # odd digits
    (0, 1, 2, 3, 4),  # low digits
    (5, 6, 7, 8, 9),  # high digits
    (0, 1, 2, 6, 8),  # overlaps task 0 in 4 digits
    (3, 5, 8, 9, 6),  # overlaps task 4 in 4 digits (hard)
    (4, 7, 9, 1, 3),  # overlaps task 5 in 4 digits (hard)
    (0, 1, 2, 6, 7),  # duplicate of task 0 (redundant, easy)
    (0, 1, 2, 6, 7),  # duplicate of task 0 (redundant, easy)
    (1, 2, 3, 6, 0),  # duplicate of task 2 (redundant, easy)
    (0, 2, 4, 6, 8),  # duplicate of task 9 (redundant)
)


@dataclass
class MnistMultitaskConfig(SplitConfig):
    num_tasks: int = option(20, ge=1, help="number of tasks (task0, task1, ...)")
    classes_per_task: int = option(
        5, ge=2, le=10, help="digits per generated task (beyond the defaults)"
    )
    subsets: list[list[int]] = option(
        default_factory=list,
        help="digit subsets, one per task (empty: the curated defaults, then seeded extras)",
    )

    label_noise: list[float] = option(
        default_factory=list,
        help="per task, the fraction of its training labels replaced by a random class of its "
        "subset (empty: none)",
    )
    rare_class_fraction: list[float] = option(
        default_factory=list,
        help="per task, the fraction of the training images of its subset's last digit that "
        "keep their label for it (empty: all)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, values, low_open in (
            ("label_noise", self.label_noise, False),
            ("rare_class_fraction", self.rare_class_fraction, True),
        ):
            if values and len(values) != self.num_tasks:
                raise ValueError(
                    f"{key} has {len(values)} entries but num_tasks={self.num_tasks}; give one "
                    "per task or none"
                )
            bad = [v for v in values if not (0 < v <= 1 if low_open else 0 <= v <= 1)]
            if bad:
                valid = "in (0, 1]" if low_open else "in [0, 1]"
                raise ValueError(f"{key} has {bad[0]}; give fractions {valid}")
        if self.subsets and len(self.subsets) != self.num_tasks:
            raise ValueError(
                f"subsets has {len(self.subsets)} entries but num_tasks="
                f"{self.num_tasks}; give one digit subset per task"
            )
        # A constraint applies to a list's elements, not to the digits inside nested lists.
        for index, subset in enumerate(self.subsets):
            digits = list(subset)
            if (
                len(digits) < 2
                or len(set(digits)) != len(digits)
                or not set(digits) <= set(range(10))
            ):
                raise ValueError(
                    f"subsets[{index}]={digits} is not a class subset: give at least 2 "
                    "distinct digits from 0..9"
                )


def task_subsets(config: MnistMultitaskConfig) -> list[tuple[int, ...]]:
    """The digit subset of every task: explicit, else the defaults, then seeded random ones."""
    if config.subsets:
        return [tuple(int(d) for d in subset) for subset in config.subsets]
    subsets = list(DEFAULT_SUBSETS[: config.num_tasks])
    generator = torch.Generator().manual_seed(config.data_seed + 1)
    while len(subsets) < config.num_tasks:
        digits = torch.randperm(10, generator=generator)[: config.classes_per_task]
        subsets.append(tuple(int(d) for d in digits))
    return subsets


def harder_training_labels(
    labels: Tensor,
    subsets: list[tuple[int, ...]],
    *,
    label_noise: list[float],
    rare_class_fraction: list[float],
    generator: torch.Generator,
) -> Tensor:
    """Training labels [N, T] with the rare classes thinned (label -1: not a member) and then
    the noisy tasks' labels replaced (a uniformly random position in the subset), every task at
    once; `labels` is left alone."""
    tasks = len(subsets)
    sizes = torch.tensor([len(s) for s in subsets])
    keep = torch.tensor(rare_class_fraction or [1.0] * tasks)
    noise = torch.tensor(label_noise or [0.0] * tasks)
    draws = torch.rand((3, *labels.shape), generator=generator)
    thinned = (labels == sizes - 1) & (draws[0] >= keep)
    result = torch.where(thinned, torch.full_like(labels, -1), labels)
    noisy = (result >= 0) & (draws[1] < noise)
    random_labels = (draws[2] * sizes).long().clamp_max(sizes - 1)
    return torch.where(noisy, random_labels, result)


def subset_labels(digits: Tensor, subsets: list[tuple[int, ...]]) -> Tensor:
    """Label of every image in every task [N, T]: the digit's position in S_t, or -1."""
    lookup = torch.full((len(subsets), 10), -1, dtype=torch.long)
    for task, subset in enumerate(subsets):
        lookup[task, list(subset)] = torch.arange(len(subset))
    return lookup[:, digits].T


class MnistMultitask(TensorTask):
    """One head and one objective (``task<k>``) per digit subset; see the module docstring."""

    Config = MnistMultitaskConfig

    @property
    def subsets(self) -> list[tuple[int, ...]]:
        return task_subsets(self.config)

    def build_spec(self) -> TaskSpec:
        names = [f"task{k}" for k in range(self.config.num_tasks)]
        return TaskSpec(
            input_shape=(1, 28, 28),
            heads=tuple(HeadSpec(n, len(s)) for n, s in zip(names, self.subsets, strict=True)),
            objectives=tuple(
                ObjectiveSpec(n, head=n, kind=ObjectiveKind.CUSTOM, role=Role.PEER, target=n)
                for n in names
            ),
            capabilities=frozenset({Capability.VALIDATION}),
            primary_metric="worst_acc",
            primary_mode="max",
            summary_metrics=("worst_acc", "avg_acc", "avg_loss", "worst_loss"),
        )

    def build_splits(self) -> dict[str, Batch]:
        images, digits = load_mnist()
        indices = split_indices(self.config)
        labels = subset_labels(digits, self.subsets)
        by_split = {name: labels[indices[name]] for name in SPLITS}
        by_split["train"] = harder_training_labels(
            by_split["train"],
            self.subsets,
            label_noise=list(self.config.label_noise),
            rare_class_fraction=list(self.config.rare_class_fraction),
            generator=torch.Generator().manual_seed(self.config.data_seed + 2),
        )
        train_fraction = (by_split["train"] >= 0).double().mean(dim=0)
        if (train_fraction == 0).any():
            empty = int((train_fraction == 0).nonzero()[0])
            raise ValueError(f"task{empty} has no training images; use more training digits")
        self.train_fraction = train_fraction.float()
        return {
            name: Batch(
                inputs=images[indices[name]],
                targets={f"task{k}": by_split[name][:, k] for k in range(self.config.num_tasks)},
            )
            for name in SPLITS
        }

    def custom_loss(
        self, objective: ObjectiveSpec, outputs: Mapping[str, Tensor], batch: Batch
    ) -> Tensor:
        """Cross-entropy on the task's own images / p_t, zero on the others; [B]."""
        _ = self.splits  # p_t is known once the data is built
        task = self.spec.objective_names.index(objective.name)
        labels = batch.targets[objective.target]
        member = labels >= 0
        loss = F.cross_entropy(outputs[objective.head], labels.clamp_min(0), reduction="none")
        fraction = self.train_fraction[task].to(loss.device)
        return torch.where(member, loss, torch.zeros_like(loss)) / fraction

    @property
    def metric_directions(self) -> dict[str, Direction]:
        """Loss and accuracy of every task (each a classification on its own members)."""
        return dict(classification_directions(self.spec))

    def evaluate(
        self, model: torch.nn.Module, split: str, *, device: torch.device, batch_size: int
    ) -> dict[str, float]:
        """Loss and accuracy of every task on its own images."""
        return masked_classification_metrics(
            self, model, split, device=device, batch_size=batch_size
        )
