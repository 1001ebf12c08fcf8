"""``multimnist``: two real digits overlaid on one canvas; tasks = left digit, right digit.

As in Sener & Koltun's MultiMNIST: the left digit is placed near the top-left and the right
digit near the bottom-right of a 36×36 canvas, each with a random shift of 0..4 pixels per axis
(left: rows/cols 0..4, right: 4..8), the two are combined with a pixel-wise max, and the canvas is
resized to 28×28 (bilinear, antialiased). Both digits of a pair come from the same split, and
pairings and shifts are fixed by ``data_seed``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from twcore.contract.batch import Batch
from twcore.contract.data_cache import cached_tensors
from twcore.contract.options import option
from twcore.contract.spec import Capability, HeadSpec, ObjectiveKind, ObjectiveSpec, Role, TaskSpec
from twcore.contract.task import TensorTask
from twcore_task_mnist.source import SPLITS, SplitConfig, load_mnist, split_indices

CANVAS = 36
MAX_SHIFT = 4
FORMAT_VERSION = 1
SIDES = ("left", "right")


@dataclass
class MultiMnistConfig(SplitConfig):
    pairs_per_digit: int = option(
        1, ge=1, help="overlaid pairs made per source digit of each split"
    )
    main: str = option(
        "left",
        choices=(*SIDES, ""),
        help="the main (target) task: 'left', 'right', or '' for peers",
    )


def place(images: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Each 28×28 image [N, 28, 28] pasted on an empty canvas at (row, col); [N, 36, 36]."""
    n = images.shape[0]
    offsets = torch.arange(28)
    row_index = (rows[:, None] + offsets)[:, :, None].expand(n, 28, 28)
    col_index = (cols[:, None] + offsets)[:, None, :].expand(n, 28, 28)
    example = torch.arange(n)[:, None, None].expand(n, 28, 28)
    canvas = torch.zeros(n, CANVAS, CANVAS)
    canvas[example, row_index, col_index] = images
    return canvas


def overlay(left: Tensor, right: Tensor, shifts: Tensor) -> Tensor:
    """The 28×28 MultiMNIST images [N, 1, 28, 28] of digit pairs [N, 28, 28] and shifts [N, 4]
    (left row, left col, right row, right col offsets in 0..4)."""
    canvas = torch.maximum(
        place(left, shifts[:, 0], shifts[:, 1]),
        place(right, shifts[:, 2] + MAX_SHIFT, shifts[:, 3] + MAX_SHIFT),
    )
    return F.interpolate(
        canvas[:, None], size=(28, 28), mode="bilinear", antialias=True, align_corners=False
    )


class MultiMnist(TensorTask):
    """Objectives ``left`` and ``right`` (10 classes each) on ``(1, 28, 28)`` canvases."""

    Config = MultiMnistConfig

    def build_spec(self) -> TaskSpec:
        main = self.config.main

        def role(side: str) -> Role:
            return Role.PEER if not main else (Role.MAIN if side == main else Role.AUXILIARY)

        primary = "main_acc" if main else "avg_acc"
        return TaskSpec(
            input_shape=(1, 28, 28),
            heads=tuple(HeadSpec(side, 10) for side in SIDES),
            objectives=tuple(
                ObjectiveSpec(side, head=side, kind=ObjectiveKind.CLASSIFICATION, role=role(side))
                for side in SIDES
            ),
            capabilities=frozenset({Capability.VALIDATION}),
            primary_metric=primary,
            primary_mode="max",
            summary_metrics=tuple(dict.fromkeys([primary, "avg_acc", "worst_acc", "avg_loss"])),
        )

    def composition(self, split: str) -> dict[str, Tensor]:
        """Source-digit indices ``left``/``right`` [N] and ``shifts`` [N, 4] of a split."""
        data = self._tensors()
        return {k: data[f"{split}_{k}"] for k in ("left", "right", "shifts")}

    def build_splits(self) -> dict[str, Batch]:
        data = self._tensors()
        _, digits = load_mnist()
        return {
            name: Batch(
                inputs=data[f"{name}_images"],
                targets={side: digits[data[f"{name}_{side}"]] for side in SIDES},
            )
            for name in SPLITS
        }

    def _tensors(self) -> dict[str, Tensor]:
        key = {"version": FORMAT_VERSION, **asdict(self.config)}
        key.pop("main")  # roles do not change the data
        return cached_tensors("multimnist", key, self._prepare)

    def _prepare(self) -> dict[str, Tensor]:
        images, _ = load_mnist()
        generator = torch.Generator().manual_seed(self.config.data_seed + 2)
        tensors: dict[str, Tensor] = {}
        for name, pool in split_indices(self.config).items():
            count = len(pool) * self.config.pairs_per_digit
            left = pool[torch.randint(len(pool), (count,), generator=generator)]
            right = pool[torch.randint(len(pool), (count,), generator=generator)]
            shifts = torch.randint(MAX_SHIFT + 1, (count, 4), generator=generator)
            tensors[f"{name}_images"] = overlay(images[left, 0], images[right, 0], shifts)
            tensors[f"{name}_left"], tensors[f"{name}_right"] = left, right
            tensors[f"{name}_shifts"] = shifts
        return tensors
