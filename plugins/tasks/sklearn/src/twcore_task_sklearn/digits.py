"""``digits``: scikit-learn's 1,797 8×8 handwritten digits, 10 classes, one objective."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from twcore.contract.batch import Batch
from twcore.contract.data_cache import cached_tensors
from twcore.contract.spec import ObjectiveKind, TaskSpec, single_objective_spec
from twcore.contract.task import TensorTask
from twcore_task_sklearn.splits import SPLITS, SplitConfig, split_indices

FORMAT_VERSION = 1


@dataclass
class DigitsConfig(SplitConfig):
    pass


def load_digit_tensors() -> dict[str, torch.Tensor]:
    """Images [1797, 1, 8, 8] in [0, 1] (pixel / 16) and labels [1797]."""
    from sklearn.datasets import load_digits  # imported here: sklearn's import takes seconds

    data = load_digits()
    images = torch.as_tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return {"images": images, "labels": torch.as_tensor(data.target, dtype=torch.long)}


class Digits(TensorTask):
    """Classify 8×8 digit images (inputs ``(1, 8, 8)``); objective ``digit``; stratified splits."""

    Config = DigitsConfig

    def build_spec(self) -> TaskSpec:
        return single_objective_spec((1, 8, 8), "digit", 10, ObjectiveKind.CLASSIFICATION)

    def build_splits(self) -> dict[str, Batch]:
        key = {"version": FORMAT_VERSION, **asdict(self.config)}
        data = cached_tensors("digits", key, lambda: self._prepare())
        return {
            name: Batch(inputs=data[f"{name}_images"], targets={"digit": data[f"{name}_labels"]})
            for name in SPLITS
        }

    def _prepare(self) -> dict[str, torch.Tensor]:
        raw = load_digit_tensors()
        indices = split_indices(raw["labels"], self.config, stratify=True)
        tensors = {}
        for name in SPLITS:
            tensors[f"{name}_images"] = raw["images"][indices[name]]
            tensors[f"{name}_labels"] = raw["labels"][indices[name]]
        return tensors
