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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.metrics import Direction, supervised_directions_of, supervised_metrics
from twcore.contract.options import option
from twcore.contract.spec import Capability, HeadSpec, ObjectiveKind, ObjectiveSpec, Role, TaskSpec
from twcore.contract.task import TensorTask
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

    def __post_init__(self) -> None:
        super().__post_init__()
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
        train_fraction = (labels[indices["train"]] >= 0).double().mean(dim=0)
        if (train_fraction == 0).any():
            empty = int((train_fraction == 0).nonzero()[0])
            raise ValueError(f"task{empty} has no training images; use more training digits")
        self.train_fraction = train_fraction.float()
        return {
            name: Batch(
                inputs=images[indices[name]],
                targets={
                    f"task{k}": labels[indices[name], k] for k in range(self.config.num_tasks)
                },
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
        every = dict.fromkeys(self.spec.objective_names, 0.0)
        return supervised_directions_of(supervised_metrics(self.spec, every, every, {}))

    @torch.no_grad()
    def evaluate(
        self, model: torch.nn.Module, split: str, *, device: torch.device, batch_size: int
    ) -> dict[str, float]:
        data = self.split(split)
        names = self.spec.objective_names
        loss_sum = torch.zeros(len(names), dtype=torch.float64, device=device)
        correct = torch.zeros_like(loss_sum)
        count = torch.zeros_like(loss_sum)
        was_training = model.training
        model.eval()
        try:
            for start in range(0, len(data), batch_size):
                chunk = data.index(slice(start, start + batch_size)).to(device)
                outputs = model(chunk.inputs)
                for k, name in enumerate(names):
                    labels = chunk.targets[name]
                    member = labels >= 0
                    logits = outputs[name][member]
                    loss_sum[k] += F.cross_entropy(logits, labels[member], reduction="sum").double()
                    correct[k] += (logits.argmax(dim=1) == labels[member]).double().sum()
                    count[k] += member.sum()
        finally:
            model.train(was_training)
        count = count.clamp_min(1)
        losses, accuracies = (loss_sum / count).tolist(), (correct / count).tolist()
        return supervised_metrics(
            self.spec,
            dict(zip(names, losses, strict=True)),
            dict(zip(names, accuracies, strict=True)),
            {},
        )
