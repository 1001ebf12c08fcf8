"""``toy-multitask``: several classification and regression tasks on one Gaussian input.

Generative model (all drawn from ``data_seed``): inputs x ~ N(0, I_d); a shared latent
h = tanh(x A) with A ∈ R^{d×m}; classification task k has labels argmax_c (h W_k + σ ε)_c with
its own W_k ∈ R^{m×C}; regression task j has target y = h v_j + σ ε. All tasks depend on the same
latent, so a shared trunk helps, while each needs its own head. One objective can be declared
the main task (the others become auxiliaries), or none (all peers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from twcore.contract.batch import Batch
from twcore.contract.metrics import supervised_directions_of
from twcore.contract.options import option
from twcore.contract.spec import Capability, HeadSpec, ObjectiveKind, ObjectiveSpec, Role, TaskSpec
from twcore.contract.task import TensorTask


@dataclass
class ToyMultitaskConfig:
    num_classification: int = option(
        3, ge=0, help="number of classification tasks (cls0, cls1, ...)"
    )
    num_classes: int = option(4, help="classes per classification task (at least 2)")
    num_regression: int = option(1, ge=0, help="number of regression tasks (reg0, ...)")
    input_dim: int = option(16, ge=1, help="input dimension d")
    latent_dim: int = option(8, ge=1, help="shared latent dimension m")
    noise: float = option(0.3, help="noise σ on logits and regression targets")
    main: str = option("cls0", help="the main objective ('' for none: all tasks are peers)")
    train_size: int = option(2000, ge=1, help="training examples")
    val_size: int = option(500, ge=1, help="validation examples")
    test_size: int = option(1000, ge=1, help="test examples")
    data_seed: int = option(0, help="seed of the generated data (fixed splits for a seed)")

    def __post_init__(self) -> None:
        if self.num_classification + self.num_regression < 1:
            raise ValueError(
                "the task needs at least one objective (num_classification + num_regression "
                f"= {self.num_classification + self.num_regression} must be >= 1)"
            )
        if self.num_classification and self.num_classes < 2:  # unused without classification
            raise ValueError(
                f"num_classes={self.num_classes} must be >= 2 when num_classification="
                f"{self.num_classification} (a classification task needs two classes)"
            )
        names = objective_names(self)
        if self.main and self.main not in names:
            raise ValueError(
                f"main='{self.main}' is not an objective; objectives: {', '.join(names)} "
                "(or '' for none)"
            )


def objective_names(config: ToyMultitaskConfig) -> list[str]:
    """``cls0..`` then ``reg0..``."""
    return [f"cls{i}" for i in range(config.num_classification)] + [
        f"reg{i}" for i in range(config.num_regression)
    ]


class ToyMultitask(TensorTask):
    """Classification and regression tasks sharing one latent representation."""

    Config = ToyMultitaskConfig

    def build_spec(self) -> TaskSpec:
        c = self.config
        heads, objectives = [], []
        for name in objective_names(c):
            is_classification = name.startswith("cls")
            heads.append(HeadSpec(name, c.num_classes if is_classification else 1))
            role = Role.PEER if not c.main else (Role.MAIN if name == c.main else Role.AUXILIARY)
            kind = ObjectiveKind.CLASSIFICATION if is_classification else ObjectiveKind.REGRESSION
            objectives.append(ObjectiveSpec(name, head=name, kind=kind, role=role))
        main_is_classification = c.main.startswith("cls")
        if c.main:
            primary = "main_acc" if main_is_classification else "main_mse"
        else:
            primary = "avg_acc" if c.num_classification else "avg_loss"
        summary = tuple(
            dict.fromkeys(
                [primary]
                + (["avg_acc", "worst_acc"] if c.num_classification else [])
                + ["avg_loss"]
            )
        )
        return TaskSpec(
            input_shape=(c.input_dim,),
            heads=tuple(heads),
            objectives=tuple(objectives),
            capabilities=frozenset({Capability.VALIDATION}),
            primary_metric=primary,
            primary_mode=supervised_directions_of([primary])[primary],
            summary_metrics=summary,
        )

    def build_splits(self) -> dict[str, Batch]:
        c = self.config
        generator = torch.Generator().manual_seed(c.data_seed)
        total = c.train_size + c.val_size + c.test_size
        mixing = torch.randn(c.input_dim, c.latent_dim, generator=generator)
        mixing /= math.sqrt(c.input_dim)
        inputs = torch.randn(total, c.input_dim, generator=generator)
        latent = torch.tanh(2.0 * inputs @ mixing)
        targets: dict[str, torch.Tensor] = {}
        for name in objective_names(c):
            if name.startswith("cls"):
                weights = torch.randn(c.latent_dim, c.num_classes, generator=generator) * 3.0
                logits = latent @ weights + c.noise * torch.randn(
                    total, c.num_classes, generator=generator
                )
                targets[name] = logits.argmax(dim=1)
            else:
                weights = torch.randn(c.latent_dim, generator=generator)
                targets[name] = latent @ weights + c.noise * torch.randn(total, generator=generator)
        data = Batch(inputs=inputs, targets=targets)
        bounds = {
            "train": (0, c.train_size),
            "val": (c.train_size, c.train_size + c.val_size),
            "test": (c.train_size + c.val_size, total),
        }
        return {split: data.index(slice(lo, hi)) for split, (lo, hi) in bounds.items()}
