"""AdaLFL's reproduction grid for ``twcore reproduce``: the base loss against the learned loss
on digits, MNIST and diabetes under plain SGD (the paper's setting), Adam, and SGD with
momentum 0.9 (where the learned loss is known to struggle; the README gives the reading)."""

from __future__ import annotations

from typing import Any

from twcore.contract.grids import Claim, ReproductionGrid, as_arguments

FULL = {
    "task": "digits,mnist,diabetes",
    "model": "mlp",
    "batch_size": 64,
    "steps": 2000,
    "eval_every": 250,
    "seed": "0,1,2,3,4",
}
QUICK = {**FULL, "task": "digits", "steps": 300, "eval_every": 100, "seed": "0"}
OPTIMISERS: dict[str, dict[str, Any]] = {
    "sgd": {"optim.name": "sgd", "optim.lr": 0.01, "optim.momentum": 0.0},
    "adam": {"optim.name": "adam", "optim.lr": 1e-3},
    "momentum": {"optim.name": "sgd", "optim.lr": 0.01, "optim.momentum": 0.9},
}
METHODS = {"base-loss": {"method": "ew"}, "adalfl": {"method": "adalfl"}}
CLAIMS = tuple(
    Claim(
        f"Under {described}, the learned loss beats the base loss on {task}",
        metric, f"adalfl-{optimiser}", f"base-loss-{optimiser}", where={"task": task},
    )
    for optimiser, described in (("sgd", "plain SGD"), ("momentum", "SGD with momentum 0.9"))
    for task, metric in (("digits", "acc"), ("mnist", "acc"), ("diabetes", "mse"))
)  # fmt: skip


def sweeps(settings: dict[str, Any], optimisers: list[str]) -> tuple[tuple[str, ...], ...]:
    """One sweep per optimiser and method, labelled ``METHOD-OPTIMISER``."""
    return tuple(
        as_arguments({**settings, "label": f"{m}-{o}", **OPTIMISERS[o], **METHODS[m]})
        for o in optimisers
        for m in METHODS
    )


def reproduction_grid() -> ReproductionGrid:
    """Base loss and AdaLFL under each optimiser on digits, MNIST (accuracy) and diabetes
    (MSE), 5 seeds, 2,000 steps; the quick version is digits under plain SGD, one seed."""
    return ReproductionGrid(
        name="adalfl-base-loss",
        description="the online learned loss beats cross-entropy / MSE at the same steps",
        sweeps=sweeps(FULL, list(OPTIMISERS)),
        quick=sweeps(QUICK, ["sgd"]),
        paper="AdaLFL: online loss function learning (Raymond, Chen, Xue, Zhang)",
        claims=CLAIMS,
    )
