"""The multitask weighting grid for ``twcore reproduce``: every weighting method, the seed
methods included, on the multitask tasks, with the tasks' average and worst-objective metrics
and each method's time per step."""

from __future__ import annotations

from typing import Any

from twcore.contract.grids import ReproductionGrid, as_arguments

WEIGHTINGS = (
    "ew,rlw,uw,dwa,gradnorm,pcgrad,mgda,mgda-ub,cagrad,nash-mtl,imtl,aligned-mtl,famo,"
    "ldro,group-dro"
)
"""Every method that weights K peer objectives: the classic ones, and the seed methods L-DRO
and group DRO."""
MAIN_AUXILIARY = "gradcos,alphavil"
"""The seed methods that need a main objective (MultiMNIST's ``left``) and auxiliary ones."""
TASKS: dict[str, dict[str, Any]] = {
    "mnist-multitask": {"task": "mnist-multitask", "model": "mlp", "method": WEIGHTINGS},
    "multimnist": {
        "task": "multimnist",
        "model": "cnn",
        "method": f"{WEIGHTINGS},{MAIN_AUXILIARY}",
    },
}
FULL = {"steps": 1000, "eval_every": 250, "seed": "0,1,2"}
QUICK = {"steps": 100, "eval_every": 0, "seed": "0"}


def reproduction_grid() -> ReproductionGrid:
    """One sweep per task over every weighting method and three seeds."""
    return ReproductionGrid(
        name="mtl-weightings",
        description="every loss weighting on the multitask tasks: average and worst-objective "
        "metrics over 3 seeds, and each method's time per step (the report's ms/step column)",
        sweeps=tuple(as_arguments({**task, **FULL}) for task in TASKS.values()),
        quick=tuple(as_arguments({**task, **QUICK}) for task in TASKS.values()),
    )
