"""AdaLFL's reproduction grid for ``twcore reproduce``."""

from __future__ import annotations

from twcore.contract.grids import ReproductionGrid, as_arguments

FULL = {
    "task": "digits,mnist,diabetes",
    "model": "mlp",
    "optim.name": "sgd",
    "optim.lr": 0.01,
    "optim.momentum": 0.0,
    "steps": 2000,
    "eval_every": 250,
    "seed": "0,1,2,3,4",
}
QUICK = {**FULL, "task": "digits", "steps": 300, "eval_every": 100, "seed": "0"}
VARIANTS = {"base-loss": {"method": "ew"}, "adalfl": {"method": "adalfl"}}


def reproduction_grid() -> ReproductionGrid:
    """The base loss against AdaLFL under plain SGD (the paper's setting; the script
    ``benchmarks/reproduce.py`` adds Adam and SGD with momentum)."""
    return ReproductionGrid(
        name="adalfl-base-loss",
        description="the online learned loss beats cross-entropy / MSE at the same steps",
        sweeps=tuple(as_arguments({**FULL, "label": k, **v}) for k, v in VARIANTS.items()),
        quick=tuple(as_arguments({**QUICK, "label": k, **v}) for k, v in VARIANTS.items()),
    )
