"""``diabetes``: scikit-learn's diabetes regression (442 patients, 10 features)."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

import torch

from twcore.contract.batch import Batch
from twcore.contract.data_cache import cached_tensors
from twcore.contract.metrics import Direction, supervised_metric_directions
from twcore.contract.spec import ObjectiveKind, TaskSpec, single_objective_spec
from twcore.contract.task import TensorTask
from twcore_task_sklearn.splits import SPLITS, SplitConfig, split_indices

FORMAT_VERSION = 1


@dataclass
class DiabetesConfig(SplitConfig):
    pass


def load_diabetes_tensors() -> dict[str, torch.Tensor]:
    """Raw features [442, 10] and disease-progression targets [442] (original units)."""
    from sklearn.datasets import load_diabetes  # imported here: sklearn's import takes seconds

    data = load_diabetes(scaled=False)
    return {
        "features": torch.as_tensor(data.data, dtype=torch.float32),
        "targets": torch.as_tensor(data.target, dtype=torch.float32),
    }


class Diabetes(TensorTask):
    """Regress disease progression from 10 features; objective ``target`` (one output).

    Features and target are standardised with the *training* split's mean and std only (no
    leakage from validation/test), so ``mse`` is in units of the training target's variance;
    ``mse_raw`` is the same error in the original units (× std²).
    """

    Config = DiabetesConfig

    def build_spec(self) -> TaskSpec:
        spec = single_objective_spec((10,), "target", 1, ObjectiveKind.REGRESSION)
        return dataclasses.replace(spec, summary_metrics=("mse", "mse_raw", "loss"))

    def build_splits(self) -> dict[str, Batch]:
        key = {"version": FORMAT_VERSION, **asdict(self.config)}
        data = cached_tensors("diabetes", key, lambda: self._prepare())
        self.target_std = float(data["target_std"])
        return {
            name: Batch(inputs=data[f"{name}_features"], targets={"target": data[f"{name}_target"]})
            for name in SPLITS
        }

    def _prepare(self) -> dict[str, torch.Tensor]:
        raw = load_diabetes_tensors()
        indices = split_indices(raw["targets"], self.config, stratify=False)
        train_x, train_y = raw["features"][indices["train"]], raw["targets"][indices["train"]]
        x_mean, x_std = train_x.mean(dim=0), train_x.std(dim=0)
        y_mean, y_std = train_y.mean(), train_y.std()
        tensors = {"target_std": y_std, "target_mean": y_mean}
        for name in SPLITS:
            tensors[f"{name}_features"] = (raw["features"][indices[name]] - x_mean) / x_std
            tensors[f"{name}_target"] = (raw["targets"][indices[name]] - y_mean) / y_std
        return tensors

    @property
    def metric_directions(self) -> dict[str, Direction]:
        """The supervised metrics and ``mse_raw``, the mean squared error in the target's own
        units (lower is better)."""
        return {**supervised_metric_directions(self.spec), "mse_raw": "min"}

    def evaluate(
        self, model: torch.nn.Module, split: str, *, device: torch.device, batch_size: int
    ) -> dict[str, float]:
        metrics = super().evaluate(model, split, device=device, batch_size=batch_size)
        _ = self.splits  # the target scale is known once the data is built
        metrics["mse_raw"] = metrics["mse"] * self.target_std**2
        return metrics
